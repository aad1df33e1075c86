"""smtpd's TicketKeeper: it installs tlsmgr's key in the server context, follows
tlsmgr's rotation, and turns tickets off as smtpd_tls_session_cache_timeout and
tls_session_ticket_cipher say."""

import asyncio
import ssl
import time

from mta import log
from mta.common import tls_ticket
from mta.common.tlsmgr_clnt import TlsmgrClient
from mta.config import load_config
from mta.smtpd.tls_tickets import TICKET_RETRY_DELAY, TicketKeeper
from mta.tlsmgr.server import TlsmgrService
from tests.support.instance import make_instance
from tests.support.unix_server import HandlerServer
from tests.unit.common.test_tls_ticket import cert, client, handshake, server  # noqa: F401


def config(tmp_path, main_cf: str = ""):
    return load_config(str(make_instance(tmp_path, main_cf=main_cf)))


def test_the_keeper_follows_tlsmgrs_rotation_and_still_accepts_the_old_tickets(tmp_path, cert):  # noqa: F811
    cfg = config(tmp_path, "smtpd_tls_session_cache_timeout = 600s\n")
    svc = TlsmgrService(cfg)
    srv = HandlerServer(str(tmp_path / "tlsmgr.sock"), svc.handle_client, cfg)
    ctx = server(cert)  # smtpd's context, and another smtpd process's
    other = server(cert)
    cctx = client(ssl.TLSVersion.TLSv1_3)

    async def go():
        keeper = TicketKeeper(cfg, ctx, TlsmgrClient(cfg, socket_path=srv.path))
        peer = TicketKeeper(cfg, other, TlsmgrClient(cfg, socket_path=srv.path))
        try:
            assert keeper.configure() and peer.configure()
            delay = await keeper.refresh()
            await peer.refresh()
            first = keeper.current
            issued = handshake(cctx, ctx)[0].session  # a ticket under the first key
            assert handshake(cctx, other, issued)[0].session_reused  # the other process
            # tlsmgr rotates: the next refresh installs the new key, keeps the old one
            svc.keys.current(time.time() + 601)
            await keeper.refresh()
            again, srv_side = handshake(cctx, ctx, issued)
            # an smtpd process started after the rotation gets both keys from tlsmgr
            late = TicketKeeper(cfg, server(cert), TlsmgrClient(cfg, socket_path=srv.path))
            assert late.configure()
            await late.refresh()
            late.client.close()
            assert (late.current, late.previous) == (keeper.current, keeper.previous)
            assert handshake(cctx, late.context, issued)[0].session_reused
            return delay, first, keeper, again.session_reused, srv_side.session_reused
        finally:
            keeper.stop()
            peer.stop()

    try:
        delay, first, keeper, reused, srv_reused = asyncio.run(go())
    finally:
        srv.stop()
    assert first == svc.keys.previous.keybuf
    assert (keeper.current, keeper.previous) == (svc.keys.key.keybuf, first)
    assert reused and srv_reused  # a ticket of the previous key still resumes
    assert 595 < delay <= 601  # asked again when tlsmgr replaces the key


def test_without_tlsmgr_the_keeper_warns_once_and_tries_again_later(tmp_path):
    cfg = config(tmp_path)
    log.init("smtpd", cfg)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    before = tls_ticket.installed_key_name(ctx)

    async def go():
        keeper = TicketKeeper(cfg, ctx, TlsmgrClient(cfg, str(tmp_path / "nobody.sock")))
        try:
            return await keeper.refresh(), await keeper.refresh(), keeper.shared
        finally:
            keeper.stop()

    assert asyncio.run(go()) == (TICKET_RETRY_DELAY, TICKET_RETRY_DELAY, False)
    assert tls_ticket.installed_key_name(ctx) == before  # OpenSSL's own key stays
    log.flush()
    text = (tmp_path / "maillog").read_text()
    assert text.count("warning: cannot get the TLS session ticket key: tlsmgr service") == 1


def test_tickets_off_by_timeout_or_cipher(tmp_path):
    for n, main_cf in enumerate(
        ["smtpd_tls_session_cache_timeout = 0\n", "tls_session_ticket_cipher =\n"]
    ):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        keeper = TicketKeeper(config(tmp_path / str(n), main_cf), ctx)
        assert not keeper.configure()  # nothing to fetch
        assert ctx.options & ssl.OP_NO_TICKET and ctx.num_tickets == 0
