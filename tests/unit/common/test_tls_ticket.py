"""Ticket keys set through ctypes (mta/common/tls_ticket.py): two server contexts
holding the same key resume each other's sessions, as two smtpd processes do;
with their own random keys they do not."""

import ssl
import subprocess

import pytest

from mta.common import tls_ticket
from mta.config import load_config
from tests.support.instance import make_instance

KEY_A = bytes(range(80))
KEY_B = bytes(range(1, 81))


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    key, crt = d / "key.pem", d / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", str(key), "-out", str(crt), "-days", "2", "-subj", "/CN=mx"],
        check=True, capture_output=True,
    )  # fmt: skip
    return str(crt), str(key)


def server(cert, key: bytes | None = None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*cert)
    if key is not None:
        assert tls_ticket.install_ticket_key(ctx, key) == ""
    return ctx


def client(version: ssl.TLSVersion) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.maximum_version = version
    return ctx


def handshake(cctx, sctx, session=None):
    """One handshake in memory, then one byte each way (TLS 1.3 tickets come
    after the handshake); the client's SSLObject and the server's."""
    bufs = [ssl.MemoryBIO() for _ in range(4)]
    c = cctx.wrap_bio(bufs[0], bufs[1], server_hostname="mx", session=session)
    s = sctx.wrap_bio(bufs[2], bufs[3], server_side=True)
    for _ in range(10):
        for obj in (c, s):
            try:
                obj.do_handshake()
            except ssl.SSLWantReadError:
                pass
        bufs[2].write(bufs[1].read())
        bufs[0].write(bufs[3].read())
    s.write(b"x")
    bufs[0].write(bufs[3].read())
    assert c.read(1) == b"x"
    return c, s


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2])
def test_a_ticket_from_one_context_resumes_on_another_with_the_same_key(cert, version):
    cctx = client(version)
    first, _ = handshake(cctx, server(cert, KEY_A))
    assert first.session.has_ticket
    again, srv = handshake(cctx, server(cert, KEY_A), first.session)
    assert again.session_reused and srv.session_reused


@pytest.mark.parametrize("key", [None, KEY_B], ids=["own random key", "another key"])
def test_no_resumption_across_contexts_with_different_keys(cert, key):
    cctx = client(ssl.TLSVersion.TLSv1_3)
    first, _ = handshake(cctx, server(cert, KEY_A))
    again, srv = handshake(cctx, server(cert, key), first.session)
    assert not again.session_reused and not srv.session_reused


def test_the_key_reads_back_and_a_wrong_size_is_refused(cert):
    ctx = server(cert, KEY_A)
    assert tls_ticket.installed_key_name(ctx) == KEY_A[:16]
    assert "not 80" in tls_ticket.install_ticket_key(ctx, KEY_B[:48])
    assert tls_ticket.installed_key_name(ctx) == KEY_A[:16]


def test_anything_but_an_sslcontext_is_never_written_to():
    assert tls_ticket.install_ticket_key(object(), KEY_A) != ""  # type: ignore[arg-type]
    assert tls_ticket.set_session_timeout(object(), 60) != ""  # type: ignore[arg-type]


def test_the_session_timeout_is_the_ticket_lifetime_hint(cert):
    sctx = server(cert, KEY_A)
    assert tls_ticket.set_session_timeout(sctx, 900) == ""
    first, _ = handshake(client(ssl.TLSVersion.TLSv1_3), sctx)
    assert first.session.ticket_lifetime_hint == 900


def test_a_disabled_session_cache_resumes_nothing(cert):
    sctx = server(cert)
    sctx.options |= ssl.OP_NO_TICKET
    sctx.num_tickets = 0
    assert tls_ticket.disable_session_cache(sctx) == ""
    cctx = client(ssl.TLSVersion.TLSv1_2)
    first, _ = handshake(cctx, sctx)
    again, _ = handshake(cctx, sctx, first.session)
    assert not again.session_reused


@pytest.mark.parametrize(
    "value,seconds", [("0", 0), ("60s", 120), ("1h", 3600), ("200d", 100 * 86400)]
)
def test_cache_timeout_is_clamped_as_postfix_does(tmp_path, value, seconds):
    cfg = load_config(
        str(make_instance(tmp_path, main_cf=f"smtpd_tls_session_cache_timeout = {value}\n"))
    )
    assert tls_ticket.cache_timeout(cfg) == seconds
