"""smtpd.xclient - the XCLIENT command: a session on behalf of another client

SYNOPSIS
    main.cf / master.cf:
        smtpd_authorized_xclient_hosts = 127.0.0.1

    from mta.smtpd import xclient
    COMMANDS[b"XCLIENT"] = xclient.do_xclient

DESCRIPTION
    A client on smtpd_authorized_xclient_hosts sees "XCLIENT NAME ADDR
    PROTO HELO REVERSE_NAME PORT LOGIN DESTADDR DESTPORT" in the EHLO
    reply and may send XCLIENT outside a mail transaction. The values
    replace the session's client from then on, for the whole session:
    NAME (verified name), REVERSE_NAME (defaults to NAME), ADDR, PORT,
    HELO, PROTO (SMTP or ESMTP), LOGIN (as if authenticated with SASL,
    sasl_method XCLIENT), DESTADDR and DESTPORT (the server end, for
    check_policy_service). "[UNAVAILABLE]" and "[TEMPUNAVAIL]" names
    become "unknown", an unavailable address "unknown", port 0, HELO and
    LOGIN empty.

    Then the session starts over as Postfix's does: the transaction and
    the HELO go (unless HELO= came with it), the client restrictions run
    again for the new client (their refusal answers MAIL, as for a
    client refused at connect), the milters (smtpd_milters) end the old
    client's conversation and get a connect event for the new one (their
    refusal answers MAIL too; a 421 ends the session), and the reply is
    the 220 greeting. Logs
    and restrictions name the new client from there on; authorization
    to send XCLIENT again is judged on the new client too. TLS stays as
    it is.

    Refusals: 550 5.7.0 Error: insufficient authorization; 503 5.5.1
    Error: MAIL transaction in progress; the 501 replies of
    smtpd/xattrs.py.

SECURITY
    Sees untrusted network input. XCLIENT changes access decisions and
    audit trails: only listed clients may send it, and a table that
    fails says no.

STANDARDS
    Postfix XCLIENT_README.

SEE ALSO
    mta/smtpd/xattrs.py, mta/smtpd/xforward.py
"""

from __future__ import annotations

from mta import log
from mta.smtpd.milters import start_milters
from mta.smtpd.transcript import NOTIFY_POLICY, NOTIFY_PROTOCOL
from mta.smtpd.xattrs import TEMPUNAVAIL, UNAVAILABLE, XattrError, parse_xattrs
from mta.smtpd.xforward import AuthorizedHosts

XCLIENT_NAMES = (
    "NAME",
    "ADDR",
    "PROTO",
    "HELO",
    "REVERSE_NAME",
    "PORT",
    "LOGIN",
    "DESTADDR",
    "DESTPORT",
)
EHLO_XCLIENT = "XCLIENT " + " ".join(XCLIENT_NAMES)
CLIENT_UNKNOWN = "unknown"


def _hosts(session) -> AuthorizedHosts:
    server = session.server
    hosts = getattr(server, "xclient_hosts", None)
    if hosts is None:
        hosts = server.xclient_hosts = AuthorizedHosts(server.cfg, "smtpd_authorized_xclient_hosts")
    return hosts


def allowed(session) -> bool:
    """May this session's client use XCLIENT (and see it in the EHLO reply)?"""
    return _hosts(session).allows(session.st)


def _known(value: str) -> str:
    return "" if value in (UNAVAILABLE, TEMPUNAVAIL) else value


def apply_pairs(session, pairs: list[tuple[str, str]]) -> None:
    """Put the XCLIENT values into the session state."""
    st = session.st
    values = dict(pairs)
    if "NAME" in values:
        st.client_name = _known(values["NAME"]) or CLIENT_UNKNOWN
        if "REVERSE_NAME" not in values:
            st.reverse_name = st.client_name
    if "REVERSE_NAME" in values:
        st.reverse_name = _known(values["REVERSE_NAME"]) or CLIENT_UNKNOWN
    if "ADDR" in values:
        st.client_addr = _known(values["ADDR"]) or CLIENT_UNKNOWN
    if "PORT" in values:
        st.client_port = int(_known(values["PORT"]) or 0)
    if "DESTADDR" in values:
        st.server_addr = _known(values["DESTADDR"])
    if "DESTPORT" in values:
        st.server_port = int(_known(values["DESTPORT"]) or 0)
    if "LOGIN" in values:
        st.sasl_username = _known(values["LOGIN"])
        session.sasl_method = st.sasl_method = "XCLIENT" if st.sasl_username else ""
    if "PROTO" in values and _known(values["PROTO"]):
        st.protocol = values["PROTO"]
        st.esmtp = st.protocol == "ESMTP"


async def do_xclient(session, arg: bytes) -> bool:
    """XCLIENT attr=value...; False when the session must end."""
    if not allowed(session):
        return await session.error("550 5.7.0 Error: insufficient authorization", NOTIFY_POLICY)
    if session.sender is not None:
        return await session.error("503 5.5.1 Error: MAIL transaction in progress")
    try:
        pairs = parse_xattrs(arg, "XCLIENT", XCLIENT_NAMES)
    except XattrError as exc:
        return await session.error(exc.reply, NOTIFY_PROTOCOL)
    before = session.client_text
    session.reset_transaction()
    st = session.st
    helo = [v for k, v in pairs if k == "HELO"]
    st.helo_name = _known(helo[-1]) if helo else ""
    if not helo:
        st.esmtp = False
        st.protocol = "SMTP"
    apply_pairs(session, pairs)
    log.info("XCLIENT from %s: client=%s", before, session.client_text)
    # a new client: the connect-stage verdicts and actions of the old one go
    st.deferred.clear()
    st.dnsbl_cache.clear()
    session.session_actions = []
    session.reject_stage = None
    checks = session.server.checks
    if not checks.delay_reject:
        verdict = await checks.client(st)
        if verdict is not None:
            session.log_reject("CONNECT", verdict)
            session.reject_stage = verdict
        session.session_actions = list(st.actions)
    st.actions = list(session.session_actions)
    if not await start_milters(session):  # the milters meet the new client: connect again
        return False
    session.reply(f"220 {session.server.banner}")
    return True
