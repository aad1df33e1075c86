"""smtpd.tls - STARTTLS for smtpd: the server context, the level, the log line

SYNOPSIS
    level = security_level(cfg)             # "none", "may" or "encrypt"
    context = server_context(cfg)           # ssl.SSLContext, or TlsSetupError
    loaded = load_server_context(cfg)       # the same, before privileges are dropped
    problems = setup_problems(cfg)          # [(param, text)] for mta check
    log.info(session.tls_peer.established(client))   # smtpd/tls_ccert.py
    await starttls(session, arg)            # smtpd's STARTTLS command
    await wrapper_start(session)            # smtpd_tls_wrappermode, before the greeting
    await counted_wrapper_tls(session)      # and its new TLS session, once anvil counts

DESCRIPTION
    smtpd_tls_security_level chooses whether smtpd offers STARTTLS
    ("may"), demands it before mail ("encrypt"), or does neither
    ("none", or empty).

    The server certificates come from smtpd_tls_chain_files, or from
    the RSA, DSA and ECDSA pairs smtpd_tls_cert_file/_key_file,
    smtpd_tls_dcert_file/_dkey_file and smtpd_tls_eccert_file/_eckey_file
    side by side (common/tls_keys.py); tls_server_sni_maps gives other
    keys to clients that ask for a server name (smtpd/tls_sni.py).

    Protocols, cipher grades, curves and DH parameters come from
    smtpd/tls_params.py (mandatory ones at encrypt and in wrapper mode),
    OpenSSL options and the curves of grade auto from smtpd/tls_library.py.

    A context that cannot be built (no certificate, an unreadable file,
    a key that does not match its certificate) raises TlsSetupError
    naming the parameter and the file; smtpd then answers STARTTLS with
    454 4.7.0, and mta check reports the same text.

    starttls() answers the command: 220, then the handshake on the same
    connection (loop.start_tls), bounded by smtpd_starttls_timeout.
    Whatever the client sent after the STARTTLS line before the
    handshake is thrown away, never read as a command, and the SMTP
    state starts over: the client says EHLO again, which no longer
    offers STARTTLS; a second STARTTLS gets 554. With
    smtpd_tls_loglevel 1 or more the handshake is logged as
    "Anonymous (Untrusted, Trusted) TLS connection established from
    ..."; 2 adds "setting up TLS connection from ...", the cipher list
    and the client certificate's names and fingerprints. With
    smtpd_tls_req_ccert (at encrypt) a client without a trusted
    certificate gets 421 4.7.1 after the handshake. A failed
    handshake (garbage, a client that hangs up or stalls) is logged
    as "SSL_accept error from ..." and ends the session.

    With smtpd_tls_wrappermode (port 465, "submissions") the handshake
    comes first, before the greeting; smtpd stops reading the moment
    the connection is made so that the client's hello reaches the TLS
    layer. No usable context: the connection is dropped with a warning.

SECURITY
    Key material is read once, by the smtpd process, before any client
    speaks; a chain file split into key groups goes through a private
    temporary file (mode 0600) removed at once.
"""

from __future__ import annotations

import asyncio
import ssl

from mta import log
from mta.common.tls_keys import load_server_keys
from mta.common.tls_proto import SYNTAX_BY_SUFFIX
from mta.config.errors import ConfigError
from mta.smtpd.tls_ccert import peer_of, received_lines, setup_client_certs
from mta.smtpd.tls_library import configure_library
from mta.smtpd.tls_params import TlsSetupError, configure_context
from mta.smtpd.tls_sni import setup_sni, sni_problems
from mta.smtpd.transcript import NOTIFY_POLICY

LEVELS = ("none", "may", "encrypt")


def security_level(cfg) -> str:
    """smtpd_tls_security_level, lower case; empty means none."""
    return cfg.get("smtpd_tls_security_level").strip().lower() or "none"


def tls_wanted(cfg) -> bool:
    """Does smtpd need its TLS context (level may or encrypt, or wrapper mode)?"""
    return security_level(cfg) in ("may", "encrypt") or cfg.get_bool("smtpd_tls_wrappermode")


def server_context(cfg, load_keys=load_server_keys) -> ssl.SSLContext:
    """The context smtpd's STARTTLS uses; TlsSetupError when it cannot be built.

    load_keys(ctx, cfg) puts the keys and certificates in; the default
    context (smtpd's own keys) also gets the tls_server_sni_maps callback,
    which builds the contexts of other keys through this function."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    configure_context(ctx, cfg)
    configure_library(ctx, cfg)
    load_keys(ctx, cfg)
    setup_client_certs(ctx, cfg)
    if load_keys is load_server_keys:
        setup_sni(ctx, cfg, lambda load: server_context(cfg, load))
    return ctx


def load_server_context(cfg) -> ssl.SSLContext | TlsSetupError | None:
    """The context, or why it cannot be built, or None at level none.

    smtpd calls this before it gives up root, as Postfix reads its keys:
    a key file readable by root alone is the usual setup."""
    if not tls_wanted(cfg):
        return None
    try:
        return server_context(cfg)
    except TlsSetupError as exc:
        return exc


def _bad_value(cfg, param: str) -> bool:
    """Is param's value one that config.validate refuses on its own (tls_proto syntax,
    or not of the parameter's kind)?"""
    try:
        cfg.get_typed(param)
    except ConfigError:
        return True
    for suffix, check in SYNTAX_BY_SUFFIX.items():
        if param.endswith(suffix):
            try:
                check(cfg.get(param))
            except ValueError:
                return True
    return param == "smtpd_tls_eecdh_grade"  # a CHOICES value


def setup_problems(cfg) -> list[tuple[str, str]]:
    """What mta check says about smtpd's TLS settings: [(param, message)]."""
    if not tls_wanted(cfg):
        return []  # none; an unknown level is a value problem of its own
    try:
        ctx = server_context(cfg)
    except TlsSetupError as exc:
        if _bad_value(cfg, exc.param):
            return []  # config.validate reports the value itself, fatal
        return [(exc.param, f"TLS not available: {exc}")]
    return sni_problems(ctx)


def _feed(protocol, data: bytes) -> None:
    """Hand bytes read before the TLS layer was in place to it (a buffered protocol or not)."""
    if not hasattr(protocol, "get_buffer"):
        protocol.data_received(data)
        return
    view = memoryview(data)
    while view:
        buf = protocol.get_buffer(len(view))
        n = min(len(buf), len(view))
        buf[:n] = view[:n]
        protocol.buffer_updated(n)
        view = view[n:]


def _feed_early(session, protocol) -> None:
    data = bytes(session.inbuf)
    session.inbuf.clear()
    if data:
        _feed(protocol, data)


async def _start_tls(session, wrapper: bool):
    """loop.start_tls on the session's connection.

    In wrapper mode the client's first TLS bytes may already sit in the
    session's buffer (uvloop starts reading after connection_made, which
    cannot pause it). start_tls swaps in its protocol and schedules that
    protocol's connection_made and the resumed reading; the buffered bytes
    are handed over by a callback scheduled right behind those two, in the
    same round of the loop, so nothing read later can overtake them."""
    server = session.server
    loop = asyncio.get_running_loop()
    plain = session.transport
    coro = loop.start_tls(
        plain,
        session,
        server.tls_context,
        server_side=True,
        ssl_handshake_timeout=server.tls_timeout,
    )
    if not wrapper:
        return await coro
    task = loop.create_task(coro)
    while plain.get_protocol() is session and not task.done():
        await asyncio.sleep(0)
    if not task.done():
        loop.call_soon(_feed_early, session, plain.get_protocol())
    return await task


async def handshake(session, wrapper: bool = False) -> bool:
    """TLS, server side, on the session's connection; False when the session must end."""
    server = session.server
    if server.tls_loglevel >= 2:
        log.info("setting up TLS connection from %s", session.client_text)
        log.info('%s: TLS cipher list "%s"', session.client_text, server.tls_cipher_list)
    try:
        transport = await _start_tls(session, wrapper)
    except (ssl.SSLError, OSError, asyncio.TimeoutError, ConnectionError) as exc:
        reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
        log.info("SSL_accept error from %s: %s", session.client_text, reason)
        session.closed = True
        return False
    if transport is None:  # the client went away during the handshake
        session.closed = True
        return False
    session.transport = transport
    session.paused = False
    session.tls = True
    peer = session.tls_peer = peer_of(transport.get_extra_info("ssl_object"), server.tls_digest)
    session.st.tls_peer = peer  # for the restrictions (smtpd/tls_checks.py)
    if server.tls_loglevel >= 2 and peer.present:
        log.info("%s", peer.cert_text(session.client_text))
    if server.tls_loglevel >= 1:
        log.info("%s", peer.established(session.client_text))
    if session.anvil is not None and not peer.reused:
        await session.anvil.new_tls(False)  # counted; wrapper mode: counted_wrapper_tls()
    if server.tls_req_ccert and not peer.trusted:
        why = (
            "Client certificate not trusted" if peer.present else "No client certificate presented"
        )
        log.info("NOQUEUE: abort: TLS from %s: %s", session.client_text, why)
        session.reply(f"421 4.7.1 {server.hostname} Error: {why}")
        return False
    return True


async def counted_wrapper_tls(session) -> bool:
    """Wrapper mode, once anvil counts the session: count its new TLS session;
    past smtpd_client_new_tls_session_rate_limit, 421 and False."""
    peer = session.tls_peer
    if session.anvil is None or peer is None or peer.reused:
        return True
    refusal = await session.anvil.new_tls(True)
    if refusal is not None:
        session.note(NOTIFY_POLICY)
        session.reply(refusal)
    return refusal is None


def received_comment(session) -> str:
    """smtpd_tls_received_header: the TLS lines of the Received: header, or ""."""
    server = session.server
    if not server.tls_received_header or session.tls_peer is None:
        return ""
    return received_lines(session.tls_peer, server.tls_ask_ccert)


async def wrapper_start(session) -> bool:
    """smtpd_tls_wrappermode: TLS before the greeting; False when the session must end."""
    server = session.server
    if server.tls_context is None:
        log.warning(
            "wrapper-mode request dropped from %s for service %s: "
            "TLS context initialization failed (see the warnings before)",
            session.client_text,
            server.limits.service or "smtpd",
        )
        return False
    return await handshake(session, wrapper=True)


async def starttls(session, arg: bytes) -> bool:
    """Answer STARTTLS for an SmtpdSession; False when the session must end."""
    server = session.server
    if server.tls_level == "none" and not server.tls_wrapper:
        return await session.error("502 5.5.1 Error: command not implemented")
    if arg:
        return await session.error("501 5.5.4 Syntax: STARTTLS")
    if session.tls:
        return await session.error("554 5.5.1 Error: TLS already active")
    if server.tls_context is None:
        return await session.error("454 4.7.0 TLS not available due to local problem", 0)
    refusal = await session.anvil.tls_allowed() if session.anvil is not None else None
    if refusal is not None:  # smtpd_client_new_tls_session_rate_limit
        return await session.error(refusal, NOTIFY_POLICY)
    session.reply("220 2.0.0 Ready to start TLS")
    session.flush()
    session.inbuf.clear()  # the injection defence: nothing sent in the clear survives
    session.restarted = True
    if not await handshake(session):
        return False
    # the session starts over (RFC 3207 section 4.2): the client must say
    # EHLO again, and a login made in the clear is forgotten
    session.reset_transaction()
    session.st.sasl_username = ""
    session.sasl_method = session.st.sasl_method = ""
    session.st.helo_name = ""
    session.st.esmtp = False
    session.st.protocol = "SMTP"
    return True
