"""smtpd's session-id cache (mta/smtpd/tls_scache.py) against the real tlsmgr service:
two server contexts (as two smtpd processes) resume each other's TLS 1.2 sessions by
id; a damaged entry, a tlsmgr that is gone or another service mean a full handshake."""

import gc
import ssl

import pytest

from mta import log
from mta.common.tlsmgr_clnt import TlsmgrBlockingClient
from mta.config import load_config
from mta.smtpd.tls_scache import SCACHE_TYPE, setup_server_cache
from mta.tlsmgr.server import TlsmgrService
from tests.support.instance import make_instance
from tests.support.unix_server import HandlerServer
from tests.unit.common.test_tls_ticket import cert  # noqa: F401
from tests.unit.common.test_tls_ticket import handshake as handshake_once

CACHE_MAIN = "smtpd_tls_session_cache_database = btree:${data_directory}/smtpd_scache\n"


def config(tmp_path, main_cf: str = CACHE_MAIN):
    return load_config(str(make_instance(tmp_path, main_cf)))


_kept = []  # server ends of finished handshakes: OpenSSL removes the session of an
# SSL freed without a TLS close (ssl_clear_bad_session), which these never send


def handshake(cctx, sctx, session=None):
    c, s = handshake_once(cctx, sctx, session)
    _kept.append(s)
    return c, s


@pytest.fixture(autouse=True)
def _free_kept():
    yield
    _kept.clear()


def client() -> ssl.SSLContext:
    """A TLS 1.2 client that sends no ticket extension: it resumes by session id."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_TICKET
    return ctx


def smtpd_context(cfg, cert, sock=None, ask_ccert=False):  # noqa: F811
    """A server context as one smtpd process sets it up, and its cache."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*cert)
    if ask_ccert:
        ctx.load_verify_locations(cert[0])
        ctx.verify_mode = ssl.CERT_OPTIONAL
    blocking = TlsmgrBlockingClient(cfg, sock) if sock else None
    return ctx, setup_server_cache(cfg, ctx, blocking)


@pytest.fixture
def tlsmgr(tmp_path):
    cfg = config(tmp_path)
    svc = TlsmgrService(cfg)
    srv = HandlerServer(str(tmp_path / "tlsmgr.sock"), svc.handle_client, cfg)
    yield cfg, svc, srv.path
    srv.stop()


def test_a_session_from_one_process_resumes_in_another_by_id(tlsmgr, cert):  # noqa: F811
    cfg, svc, sock = tlsmgr
    cctx = client()
    one, cache_one = smtpd_context(cfg, cert, sock)
    first, srv = handshake(cctx, one)
    assert not first.session_reused and first.session.id and not first.session.has_ticket
    assert cache_one.stored == 1
    der = svc.caches[SCACHE_TYPE].lookup(first.session.id.hex(), 0)
    assert der  # tlsmgr holds it under the session id
    two, cache_two = smtpd_context(cfg, cert, sock)
    again, srv = handshake(cctx, two, first.session)
    assert again.session_reused and srv.session_reused
    assert cache_two.found == 1
    assert again.session.id == first.session.id


def test_without_the_parameter_another_process_makes_a_full_handshake(tmp_path, cert):  # noqa: F811
    cfg = config(tmp_path, "")
    cctx = client()
    one, cache = smtpd_context(cfg, cert)
    assert cache is None
    first, _ = handshake(cctx, one)
    again, _ = handshake(cctx, smtpd_context(cfg, cert)[0], first.session)
    assert not again.session_reused
    same, _ = handshake(cctx, one, first.session)
    assert same.session_reused  # OpenSSL's own cache still serves its process


def test_a_timeout_of_zero_keeps_no_cache(tmp_path, cert):  # noqa: F811
    cfg = config(tmp_path, CACHE_MAIN + "smtpd_tls_session_cache_timeout = 0\n")
    assert smtpd_context(cfg, cert)[1] is None


def test_a_context_of_other_settings_does_not_resume_the_session(tlsmgr, cert):  # noqa: F811
    cfg, _, sock = tlsmgr
    cctx = client()
    first, _ = handshake(cctx, smtpd_context(cfg, cert, sock)[0])
    other, cache = smtpd_context(cfg, cert, sock, ask_ccert=True)
    again, _ = handshake(cctx, other, first.session)
    assert cache.found == 1 and not again.session_reused  # found, but not for this policy
    same, cache = smtpd_context(cfg, cert, sock, ask_ccert=True)
    resumed, _ = handshake(cctx, same, again.session)
    assert resumed.session_reused  # one of its own policy resumes


@pytest.mark.parametrize("entry", ["9999999999:3082abcd", "9999999999:zz", "garbage"])
def test_a_damaged_entry_is_a_full_handshake(tlsmgr, cert, entry):  # noqa: F811
    cfg, svc, sock = tlsmgr
    cctx = client()
    first, _ = handshake(cctx, smtpd_context(cfg, cert, sock)[0])
    svc.caches[SCACHE_TYPE].store.put(first.session.id.hex(), entry)
    two, cache = smtpd_context(cfg, cert, sock)
    again, _ = handshake(cctx, two, first.session)
    assert not again.session_reused and cache.missed == 1 and cache.found == 0


def test_an_entry_under_another_id_is_not_used(tlsmgr, cert):  # noqa: F811
    cfg, svc, sock = tlsmgr
    cctx = client()
    one = smtpd_context(cfg, cert, sock)[0]
    first, _ = handshake(cctx, one)
    second, _ = handshake(cctx, one)
    store = svc.caches[SCACHE_TYPE].store
    store.put(first.session.id.hex(), store.get(second.session.id.hex()))
    two, cache = smtpd_context(cfg, cert, sock)
    again, _ = handshake(cctx, two, first.session)
    assert not again.session_reused and cache.missed == 1


def test_tlsmgr_down_is_a_full_handshake_and_one_warning(tmp_path, cert):  # noqa: F811
    cfg = config(tmp_path)
    log.init("smtpd", cfg)
    cctx = client()
    gone = str(tmp_path / "nobody.sock")
    one, cache = smtpd_context(cfg, cert, gone)
    first, _ = handshake(cctx, one)
    assert cache.stored == 0
    for _ in range(2):
        again, _ = handshake(cctx, smtpd_context(cfg, cert, gone)[0], first.session)
        assert not again.session_reused
    log.flush()
    text = (tmp_path / "maillog").read_text()
    assert "warning: TLS session cache: tlsmgr service: connect:" in text
    assert text.count("warning: TLS session cache") == 3  # once per context, not per call


def test_a_session_openssl_removes_is_deleted_from_tlsmgr(tlsmgr, cert):  # noqa: F811
    cfg, svc, sock = tlsmgr
    one = smtpd_context(cfg, cert, sock)[0]
    first, srv = handshake_once(client(), one)  # not kept
    sid = first.session.id.hex()
    assert svc.caches[SCACHE_TYPE].lookup(sid, 0)
    del srv  # freed without a TLS close: OpenSSL drops the session, and tlsmgr with it
    gc.collect()
    assert svc.caches[SCACHE_TYPE].lookup(sid, 0) == b""
