"""smtpd.xforward - the XFORWARD command: the original client, through a content filter

SYNOPSIS
    main.cf / master.cf:
        smtpd_authorized_xforward_hosts = 127.0.0.0/8

    from mta.smtpd import xforward
    COMMANDS[b"XFORWARD"] = xforward.do_xforward
    xforward.message_attrs(session, attrs)     # the forwarded client, for cleanup
    log_tail = xforward.log_fields(session)    # ", orig_queue_id=..., orig_client=..."

DESCRIPTION
    A client on smtpd_authorized_xforward_hosts (a host or network
    list as Postfix's, matched against the session's client) sees
    "XFORWARD NAME ADDR PROTO HELO SOURCE PORT IDENT" in the EHLO reply
    and may send XFORWARD outside a mail transaction. The first
    XFORWARD of a transaction sets every attribute to unavailable, then
    each command sets those it names; the reply is "250 2.0.0 Ok". The
    values stand for the client in the message: the Received: header
    and the envelope attributes the queue file keeps (and that the
    smtp client forwards again with smtp_send_xforward_command). The
    "QUEUEID: client=" line keeps naming the session's own client and
    adds ", orig_queue_id=IDENT" and ", orig_client=NAME[ADDR]", as
    Postfix logs it. Access restrictions keep judging the session's
    own client. The values go when the transaction ends (end of DATA,
    RSET, HELO/EHLO: session.reset_transaction()).

    Refusals: 550 5.7.0 Error: insufficient authorization (a client
    not on the list); 503 5.5.1 Error: MAIL transaction in progress;
    the 501 replies of smtpd/xattrs.py for bad syntax.

SECURITY
    Sees untrusted network input. XFORWARD changes audit trails, so
    only listed clients may use it; a table that fails says no.

STANDARDS
    Postfix XFORWARD_README.

SEE ALSO
    mta/smtpd/xattrs.py (the parser), mta/common/xforward.py (the client side)
"""

from __future__ import annotations

from mta import log
from mta.common.match_list import AddrList
from mta.maps import MapRetry
from mta.smtpd.transcript import NOTIFY_POLICY, NOTIFY_PROTOCOL
from mta.smtpd.xattrs import TEMPUNAVAIL, UNAVAILABLE, XattrError, parse_xattrs

XFORWARD_NAMES = ("NAME", "ADDR", "PROTO", "HELO", "SOURCE", "PORT", "IDENT")
EHLO_XFORWARD = "XFORWARD " + " ".join(XFORWARD_NAMES)
CLIENT_UNKNOWN = "unknown"  # name or address the upstream did not have


class AuthorizedHosts:
    """A smtpd_authorized_x*_hosts list; a table that fails says no."""

    def __init__(self, cfg, param: str) -> None:
        self.param = param
        self.hosts = AddrList.from_param(cfg, param) if cfg.get(param).strip() else None

    def allows(self, st) -> bool:
        if self.hosts is None:
            return False
        try:
            return self.hosts.match(st.client_addr, st.client_name)
        except MapRetry as exc:
            log.warning("%s: %s; access denied", self.param, exc)
            return False


def _hosts(session) -> AuthorizedHosts:
    server = session.server
    hosts = getattr(server, "xforward_hosts", None)
    if hosts is None:
        hosts = server.xforward_hosts = AuthorizedHosts(
            server.cfg, "smtpd_authorized_xforward_hosts"
        )
    return hosts


def allowed(session) -> bool:
    """May this session's client use XFORWARD (and see it in the EHLO reply)?"""
    return _hosts(session).allows(session.st)


async def do_xforward(session, arg: bytes) -> bool:
    """XFORWARD attr=value...; False when the session must end."""
    if not allowed(session):
        return await session.error("550 5.7.0 Error: insufficient authorization", NOTIFY_POLICY)
    if session.sender is not None:
        return await session.error("503 5.5.1 Error: MAIL transaction in progress")
    try:
        pairs = parse_xattrs(arg, "XFORWARD", XFORWARD_NAMES)
    except XattrError as exc:
        return await session.error(exc.reply, NOTIFY_PROTOCOL)
    if session.xforward is None:
        session.xforward = dict.fromkeys(XFORWARD_NAMES, UNAVAILABLE)
    session.xforward.update(pairs)
    session.reply("250 2.0.0 Ok")
    return True


def _known(value: str) -> str:
    return "" if value in (UNAVAILABLE, TEMPUNAVAIL) else value


def forwarded_client(xf: dict) -> str:
    """NAME[ADDR] of the forwarded client."""
    name = _known(xf["NAME"]) or CLIENT_UNKNOWN
    addr = _known(xf["ADDR"]) or CLIENT_UNKNOWN
    return f"{name}[{addr}]"


def message_attrs(session, attrs: dict) -> None:
    """Put the forwarded client in place of the session's in a message's attributes."""
    xf = session.xforward
    if xf is None:
        return
    attrs["client_name"] = _known(xf["NAME"]) or CLIENT_UNKNOWN
    attrs["reverse_client_name"] = _known(xf["NAME"]) or CLIENT_UNKNOWN
    attrs["client_address"] = _known(xf["ADDR"]) or CLIENT_UNKNOWN
    attrs["client_port"] = _known(xf["PORT"]) or CLIENT_UNKNOWN
    attrs["helo_name"] = _known(xf["HELO"])
    attrs["protocol"] = _known(xf["PROTO"]) or attrs.get("protocol", "")
    if _known(xf["SOURCE"]):
        attrs["rewrite_context"] = xf["SOURCE"].lower()
    if _known(xf["IDENT"]):
        attrs["orig_queue_id"] = xf["IDENT"]


def log_fields(session) -> str:
    """What the "QUEUEID: client=" line adds for a forwarded client."""
    xf = session.xforward
    if xf is None:
        return ""
    ident = _known(xf["IDENT"])
    out = f", orig_queue_id={ident}" if ident else ""
    if _known(xf["NAME"]) or _known(xf["ADDR"]):
        out += f", orig_client={forwarded_client(xf)}"
    return out
