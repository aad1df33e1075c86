"""postscreen.session - one client connection: tests, verdict, hand-off

SYNOPSIS
    from mta.postscreen.session import screen_client
    await screen_client(server, sock)      # server: postscreen.server.PscServer

DESCRIPTION
    The order of work for one connection, as Postfix's postscreen:

    1.  "CONNECT from [addr]:port to [laddr]:lport"; the per-client
        connection limit (421, "too many connections").
    2.  postscreen_access_list: permit is "ALLOWLISTED" and an immediate
        hand-off to smtpd; reject is "DENYLISTED" and the denylist
        action (drop: 521 and close; enforce: 550 at RCPT; ignore).
    3.  The cache: when every enabled test is still passed, "PASS OLD"
        and an immediate hand-off, with nothing said to the client.
    4.  postscreen_pre_queue_limit (421, "all screening ports busy").
    5.  Before the greeting: the "220-" teaser (postscreen_greet_banner),
        the DNSBL queries through dnsblog, and postscreen_greet_wait
        during which any input is "PREGREET n after t from ...: text".
        Input is only peeked at, so a client that may go on keeps it.
        A client whose DNSBL score falls to the allowlist threshold
        skips the rest of the wait and every other test.
    6.  "DNSBL rank n for [addr]:port" when the score reaches the
        threshold, and its action.
    7.  When deep tests (pipelining, non-SMTP command, bare newline) are
        due, or a test failed with enforce: the final "220" and the
        dummy SMTP engine (postscreen/engine.py), which never accepts
        mail; a client that passed is told "450 4.3.2 Service currently
        unavailable" at RCPT and passes next time. Otherwise "PASS NEW",
        the cache entry, and the hand-off (smtpd sends the final 220).

    A hang-up is "HANGUP after t from [addr]:port in tests before SMTP
    handshake" (or "after"); every connection postscreen itself ends is
    "DISCONNECT [addr]:port".

SECURITY
    Sees untrusted clients: at most PREGREET_PEEK bytes are looked at
    before the greeting and one line_length_limit line in the engine.
"""

from __future__ import annotations

import asyncio
import socket
import time

from mta import log
from mta.common.child_wait import wait_fd
from mta.common.pass_proto import pass_connection
from mta.postscreen.access import PSC_ACL_PERMIT, PSC_ACL_REJECT
from mta.postscreen.cache import DEEP_TESTS, PSC_DNSBL, PSC_PREGREET, due_tests
from mta.postscreen.dnsbl import query_dnsbl, weigh
from mta.postscreen.engine import run_engine
from mta.postscreen.smtp_engine import printable

PREGREET_PEEK = 1024  # bytes of early client input looked at
PASS_TIMEOUT = 30.0  # seconds smtpd may take to take a client over
ACTION_DROP, ACTION_ENFORCE, ACTION_IGNORE = "drop", "enforce", "ignore"


class ClientState:
    """What postscreen knows about one connection."""

    def __init__(self, sock: socket.socket, addr: str, port: int) -> None:
        self.sock = sock
        self.addr = addr
        self.port = port
        self.where = f"[{addr}]:{port}"
        self.enforce_reply = ""  # the 550 a failed "enforce" test gives at RCPT
        self.failed = False  # some test failed (any action)
        self.teaser_sent = False
        self.started = time.monotonic()
        self.stamps: list[int] = []
        self.due: set[int] = set()
        self.allowlist_ok = True  # postscreen_allowlist_interfaces lets it earn a pass
        self.dnsbl_ttl: int | None = None  # seconds the DNSBL pass counts, from the answers
        self.footer = None  # postscreen_reject_footer (postscreen/footer.py)
        self.helo = ""  # the HELO name, once the dummy engine heard one

    def with_footer(self, reply: str) -> str:
        """reply with postscreen_reject_footer, when it is a 4xx or 5xx."""
        if not self.footer:
            return reply
        attrs = {
            "client_address": self.addr,
            "client_port": str(self.port),
            "client_name": "unknown",
            "reverse_client_name": "unknown",
            "client": f"unknown[{self.addr}]",
            "helo_name": self.helo,
        }
        return self.footer.apply(reply, attrs)


def _peer(sock: socket.socket) -> tuple[str, int, str, int]:
    peer, local = sock.getpeername(), sock.getsockname()

    def plain(a: str) -> str:
        return a[7:] if a.startswith("::ffff:") else a

    return plain(peer[0]), peer[1], plain(local[0]), local[1]


async def send(st: ClientState, text: str) -> None:
    loop = asyncio.get_running_loop()
    try:
        await asyncio.wait_for(loop.sock_sendall(st.sock, text.encode()), 10.0)
    except (OSError, TimeoutError, asyncio.TimeoutError):
        pass


async def wait_readable(sock: socket.socket) -> None:
    await wait_fd(sock.fileno())


async def drop(st: ClientState, reply: str) -> None:
    await send(st, st.with_footer(reply) + "\r\n")
    log.info("DISCONNECT %s", st.where)


async def hand_off(server, st: ClientState) -> bool:
    """Give the client to smtpd; False (after a 421) when that cannot be done."""
    if server.handing >= server.post_queue_limit > 0:
        log.info("NOQUEUE: reject: CONNECT from %s: all server ports busy", st.where)
        await drop(st, "421 4.3.2 All server ports are busy")
        return False
    server.handing += 1
    try:
        await pass_connection(server.pass_path(), st.sock, PASS_TIMEOUT)
        return True
    except (OSError, TimeoutError, asyncio.TimeoutError) as exc:
        log.warning("cannot pass connection to service %s: %s", server.pass_name, exc or "timeout")
        await drop(st, "421 4.3.2 All server ports are busy")
        return False
    finally:
        server.handing -= 1


async def screen_client(server, sock: socket.socket) -> None:
    try:
        addr, port, laddr, lport = _peer(sock)
    except OSError:
        return
    st = ClientState(sock, addr, port)
    st.footer = server.footer
    log.info("CONNECT from %s to [%s]:%d", st.where, laddr, lport)
    limit = server.client_limit
    if limit > 0 and server.per_client.get(addr, 0) >= limit:
        log.info("NOQUEUE: reject: CONNECT from %s: too many connections", st.where)
        await drop(st, f"421 4.7.0 Error: too many connections from {addr}")
        return
    server.per_client[addr] = server.per_client.get(addr, 0) + 1
    try:
        await _screen(server, st, laddr)
    finally:
        left = server.per_client.get(addr, 1) - 1
        if left > 0:
            server.per_client[addr] = left
        else:
            server.per_client.pop(addr, None)


async def _screen(server, st: ClientState, laddr: str) -> None:
    verdict = server.access.check(st.addr)
    if verdict == PSC_ACL_PERMIT:
        log.info("ALLOWLISTED %s", st.where)
        await hand_off(server, st)
        return
    if verdict == PSC_ACL_REJECT:
        log.info("DENYLISTED %s", st.where)
        action = server.denylist_action
        if action == ACTION_DROP:
            await drop(st, "521 5.3.2 Service currently unavailable")
            return
        if action == ACTION_ENFORCE:
            st.failed = True
            st.enforce_reply = "550 5.3.2 Service currently unavailable"
    st.allowlist_ok = server.allowlist_interface(laddr)
    if not st.allowlist_ok:
        log.info("ALLOWLIST VETO %s", st.where)
    now = time.time()
    st.stamps = server.cache.get(st.addr)
    st.due = due_tests(st.stamps, server.enabled, now)
    if not st.due and not st.failed and st.allowlist_ok:
        log.info("PASS OLD %s", st.where)
        await hand_off(server, st)
        return
    if server.under_test >= server.pre_queue_limit > 0:
        log.info("NOQUEUE: reject: CONNECT from %s: all screening ports busy", st.where)
        await drop(st, "421 4.3.2 All screening ports are busy")
        return
    server.under_test += 1
    try:
        await _run_tests(server, st)
    finally:
        server.under_test -= 1


async def _run_tests(server, st: ClientState) -> None:
    before = st.due & {PSC_PREGREET, PSC_DNSBL}
    if before:
        outcome = await _before_greeting(server, st)
        if outcome != "continue":
            return
    deep_due = st.due & set(DEEP_TESTS)
    if deep_due or st.enforce_reply:
        await run_engine(server, st)
        return
    if st.failed:  # ignored failures: serve the client, remember nothing
        await hand_off(server, st)
        return
    passed(server, st)
    await hand_off(server, st)


def passed(server, st: ClientState) -> None:
    """Every due test passed: "PASS NEW" and the cache entry."""
    now = int(time.time())
    for test in st.due:
        ttl = st.dnsbl_ttl if test == PSC_DNSBL and st.dnsbl_ttl else server.ttls[test]
        st.stamps[test] = max(st.stamps[test], now + ttl)
    st.due = set()
    if st.allowlist_ok:
        server.cache.put(st.addr, st.stamps)
        log.info("PASS NEW %s", st.where)


async def _before_greeting(server, st: ClientState) -> str:
    """The teaser, the DNSBL queries and the greet wait: "continue", or "done"."""
    loop = asyncio.get_running_loop()
    dnsbl_task = None
    if PSC_DNSBL in st.due:
        dnsbl_task = asyncio.ensure_future(
            query_dnsbl(server.sites, st.addr, server.dnsblog_path(), server.dnsbl_timeout)
        )
    try:
        if server.greet_banner and PSC_PREGREET in st.due:
            await send(st, f"220-{server.greet_banner}\r\n")
            st.teaser_sent = True
        start = loop.time()
        deadline = start + (server.greet_wait if PSC_PREGREET in st.due else 0)
        peek = asyncio.ensure_future(wait_readable(st.sock))
        early = None
        allowlisted = False
        try:
            while True:
                waiting = {peek} | ({dnsbl_task} if dnsbl_task and early is None else set())
                left = deadline - loop.time()
                if left <= 0:
                    break
                done, _ = await asyncio.wait(
                    waiting, timeout=left, return_when=asyncio.FIRST_COMPLETED
                )
                if peek in done:
                    break
                if dnsbl_task is not None and dnsbl_task in done and early is None:
                    early = weigh(server.sites, dnsbl_task.result())
                    if server.allowlist_threshold < 0 and (
                        early.score <= server.allowlist_threshold and not st.failed
                    ):
                        allowlisted = True
                        break
                if not done:
                    break
        finally:
            pending_peek = not peek.done()
            peek.cancel()
            # the reader goes before the socket is handed over or closed
            await asyncio.gather(peek, return_exceptions=True)
        if allowlisted:
            _allowlist_by_dnsbl(server, st, early)
            await hand_off(server, st)
            return "done"
        if not pending_peek:
            try:
                data = st.sock.recv(PREGREET_PEEK, socket.MSG_PEEK)
            except OSError:
                data = b""
            elapsed = loop.time() - start
            if not data:
                log.info(
                    "HANGUP after %.1f from %s in tests before SMTP handshake", elapsed, st.where
                )
                log.info("DISCONNECT %s", st.where)
                return "done"
            log.info(
                "PREGREET %d after %.1f from %s: %s",
                len(data),
                elapsed,
                st.where,
                printable(data),
            )
            st.failed = True
            st.due.discard(PSC_PREGREET)
            action = server.greet_action
            if action == ACTION_DROP:
                await drop(st, "521 5.5.1 Protocol error")
                return "done"
            if action == ACTION_ENFORCE and not st.enforce_reply:
                st.enforce_reply = "550 5.5.1 Protocol error"
        if dnsbl_task is not None:
            result = weigh(server.sites, await dnsbl_task)
            dnsbl_task = None
            if result.score >= server.dnsbl_threshold:
                log.info("DNSBL rank %d for %s", result.score, st.where)
                st.failed = True
                st.due.discard(PSC_DNSBL)
                name = server.dnsbl_reply_name(result.site)
                text = f"Service unavailable; client [{st.addr}] blocked using {name}"
                action = server.dnsbl_action
                if action == ACTION_DROP:
                    await drop(st, f"521 5.7.1 {text}")
                    return "done"
                if action == ACTION_ENFORCE and not st.enforce_reply:
                    st.enforce_reply = f"550 5.7.1 {text}"
            elif server.allowlist_threshold < 0 and result.score <= server.allowlist_threshold:
                if not st.failed:
                    _allowlist_by_dnsbl(server, st, result)
                    await hand_off(server, st)
                    return "done"
            else:
                st.dnsbl_ttl = server.dnsbl_ttl(result.ttl)
        return "continue"
    finally:
        if dnsbl_task is not None:
            dnsbl_task.cancel()


def _allowlist_by_dnsbl(server, st: ClientState, result) -> None:
    """postscreen_dnsbl_allowlist_threshold: every test counts as passed for the DNSBL TTL."""
    ttl = server.dnsbl_ttl(result.ttl)
    now = int(time.time())
    st.stamps = [max(s, now + ttl) for s in st.stamps]
    st.due = set()
    if st.allowlist_ok:
        server.cache.put(st.addr, st.stamps)
        log.info("PASS NEW %s", st.where)
