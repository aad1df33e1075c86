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


def config(tmp_path, main_cf: str = ""):
    return load_config(str(make_instance(tmp_path, main_cf=main_cf)))


def test_the_keeper_installs_the_key_and_follows_its_rotation(tmp_path):
    cfg = config(tmp_path, "smtpd_tls_session_cache_timeout = 600s\n")
    svc = TlsmgrService(cfg)
    srv = HandlerServer(str(tmp_path / "tlsmgr.sock"), svc.handle_client, cfg)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    before = tls_ticket.installed_key_name(ctx)

    async def go():
        keeper = TicketKeeper(cfg, ctx, TlsmgrClient(cfg, socket_path=srv.path))
        try:
            assert keeper.configure()
            delay = await keeper.refresh()
            first = tls_ticket.installed_key_name(ctx)
            # tlsmgr rotates: the next refresh installs the new key
            svc.keys.current(time.time() + 601)
            await keeper.refresh()
            return delay, first, tls_ticket.installed_key_name(ctx)
        finally:
            keeper.stop()

    try:
        delay, first, second = asyncio.run(go())
    finally:
        srv.stop()
    assert first == svc.keys.previous.name and first != before
    assert second == svc.keys.key.name != first
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
