"""mta.smtp - the smtp and lmtp delivery agents

SYNOPSIS
    master.cf:  smtp   unix  -  -  n  -  -  smtp
                relay  unix  -  -  n  -  -  smtp
                lmtp   unix  -  -  n  -  -  lmtp

    from mta.smtp import deliver, deliver_lmtp, make_deliver
    await deliver(job)            # job: mta.common.deliver_agent.DeliveryJob

DESCRIPTION
    Delivers a request's recipients to the request's next hop over SMTP
    (or LMTP, when the agent runs as the lmtp service).

    The next hop becomes a list of addresses (mta/smtp/nexthop.py: MX
    look-up, [host], :port, lmtp unix: and inet: forms). The addresses
    are tried in order: a failed connection, greeting or EHLO, a
    timeout, a lost connection, a malformed reply or a 421 moves on to
    the next address, for the recipients that are still open, until
    smtp_mx_session_limit sessions were used. A recipient that a
    server refuses with a 4xx reply is deferred with that reply, and
    the next server (the next MX host, then the fallback relays) tries
    it again in the same request; a server that did so is not asked
    again. When no server could be
    reached at all the request ends with job.hop_failed(), so that qmgr
    counts it against the destination; otherwise the recipients still
    open are deferred (or bounced, for a 5xx) with the last reason.

    A successful session is kept in the process's session cache
    (mta/smtp/scache.py) when smtp_connection_cache_on_demand is set or
    the next hop is in smtp_connection_cache_destinations, unless it
    reached smtp_connection_reuse_count_limit (0: no limit) uses or
    smtp_connection_reuse_time_limit of age; the next request for the
    same next hop reuses it. A reused session that turns out to be
    dead is dropped and a new connection made. A session that
    authenticated (SMTP AUTH) is never kept, and with
    smtp_sender_dependent_authentication none is kept or reused, as in
    Postfix: the credentials depend on the sender (mta/smtp/sasl.py).
    A TLS-encrypted session is kept only with smtp_tls_connection_reuse
    (or the policy table's connection_reuse=yes); Postfix's default is
    not to.

    When the scache service runs (its socket private/scache exists), a
    process that already keeps LOCAL_IDLE_PER_KEY idle sessions for a
    next hop hands further plain-text sessions to it (mta/scache), and a process that
    has none of its own asks it before it connects: sessions move
    between the smtp processes, with their EHLO keywords, age and use
    count. TLS sessions stay in their process.

    smtp_fallback_relay: when the next hop's servers could not take
    the mail (none reachable, a 4xx or 5xx greeting, a session ended
    before the content went out) or its domain was not found, the
    fallback relays are tried in order, each resolved as a next hop
    (domain, host:port, [host]:port). Never for LMTP, after the content
    was sent, for a null MX or a mail loop, for a domain this host is
    an MX host of, or for the next hop itself. When they fail too the
    recipients are deferred with the last reason; a fallback relay
    that cannot be found defers, it never bounces.

    smtp_generic_maps (lmtp_generic_maps) maps the sender, the
    recipients and the header addresses as the message goes out
    (mta/smtp/generic.py); a table that fails for now defers the
    request.

    The TLS policy of the next hop (smtp_tls_policy_maps, else
    smtp_tls_security_level; lmtp_* for LMTP) is checked before
    anything else: a table entry that cannot be used, or a required
    TLS context that cannot be built defers the mail with a warning; a
    level that requires TLS never falls back to plain text, and never
    uses a kept session made under another policy. Each fallback relay
    is its own next hop with its own policy. At "dane" and "dane-only"
    each server's DNSSEC-validated TLSA records decide, before it is
    connected to, whether the session is "may", "encrypt",
    authenticated by the records, or deferred (mta/smtp/dane.py).
    With smtp_tls_mta_sts_enable a bare-domain next hop's MTA-STS
    policy (mta/smtp/mta_sts.py) may raise none, may or encrypt to
    verify and keep only the MX hosts it names.

    A request may name its source: the delivery attributes
    "source_address" and "helo_name" (qmgr sets them from the
    message's egress pool, mta/common/egress.py). The session is then
    bound to that address (for both address families, instead of
    smtp_bind_address and smtp_bind_address6) and greets with that
    name; sessions are kept and found by next hop, source address and
    EHLO name together, so a session never carries mail of another
    source. Every recipient status names the local address of the
    session that decided it (its "source"). A request's
    "reuse_count_limit" attribute (a shaped site's per_connection,
    mta/qmgr/shaping.py) replaces smtp_connection_reuse_count_limit
    for the sessions it uses; "connections_per_minute" with
    "connection_pace_key" paces new connections across every smtp
    process (mta/smtp/conn_pace.py).

    job.conn_time is the time until the session was ready (connected,
    greeted, TLS and EHLO done); near zero for a reused session.

    The outcome of a transaction is made durable (job.settle(): logs and
    done marks) as soon as the server has answered, before QUIT or the
    hand-over to the session cache: a crash after that point does not
    send those recipients again.

SECURITY
    Runs unprivileged. Talks to remote servers (untrusted replies) and
    DNS (untrusted answers); reads the queue file read-only.

STANDARDS
    RFC 5321, RFC 2033 (LMTP); see mta/smtp/client.py.

SEE ALSO
    mta/smtp/client.py (one session), mta/smtp/nexthop.py (where to
    connect), mta/smtp/generic.py (generic(5)), mta/smtp/scache.py
    (session cache), mta/smtp/sasl.py (SMTP AUTH), mta/smtp/reply.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import socket
import time
from dataclasses import dataclass, field

from mta import log
from mta.common.deliver_agent import DeliveryJob
from mta.common.dkim import DkimError
from mta.maps import MapRetry
from mta.scache import scache_find, scache_save
from mta.smtp import mta_sts
from mta.smtp.client import (
    Outgoing,
    SaslFailed,
    Session,
    SessionError,
    Settings,
    StaleSession,
    TlsFailed,
    connect,
    param_name,
)
from mta.smtp.conn_pace import connection_turn
from mta.smtp.dane import DANE_LEVELS, dane_policy
from mta.smtp.generic import GenericMapper
from mta.smtp.nexthop import NexthopError, Target, Targets, resolve_nexthop
from mta.smtp.scache import SessionCache
from mta.smtp.tls_policy import wrapper_level

session_cache = SessionCache()
_no_tls: dict[str, float] = {}  # relay -> until when TLS is not tried again
NO_TLS_RETRY = 3600  # seconds a server whose TLS handshake failed is spoken to in plain text
FALLBACK_NOT_FOUND = frozenset({"5.4.4"})  # next hop not found: the fallback relays may know it
LOCAL_IDLE_PER_KEY = 64  # idle sessions per next hop kept before the surplus goes to scache


def _cacheable(st: Settings, nexthop: str, session) -> bool:
    if session.authenticated or st.sasl.per_sender:
        return False  # its credentials must not serve other mail (mta/smtp/sasl.py)
    if session.tls and not session.st.tls_policy.connection_reuse:
        return False  # smtp_tls_connection_reuse = no (Postfix's default)
    if not (st.cache_on_demand or nexthop.lower() in st.cache_destinations):
        return False
    if st.reuse_count_limit and session.uses >= st.reuse_count_limit:
        return False
    return time.monotonic() - session.created < st.reuse_time_limit


def _scache_path(cfg) -> str | None:
    """The shared cache's socket when the scache service runs, else None."""
    path = os.path.join(cfg.get("queue_directory"), "private", "scache")
    return path if os.path.exists(path) else None


def _cache_key(lmtp: bool, nexthop: str, source: tuple[str, str]) -> tuple:
    """A kept session's key: the next hop, and the source address and EHLO name a
    request asked for, so that no session serves a request of another source."""
    return (lmtp, nexthop.lower(), *source)


def _scache_key(key: tuple) -> str:
    kind = ("lmtp:" if key[0] else "smtp:") + key[1]
    return kind + (f"|{key[2]}|{key[3]}" if key[2] or key[3] else "")


async def _scache_take(job, st: Settings, key: tuple) -> Session | None:
    """A session another smtp process left in the shared cache, or None."""
    path = _scache_path(job.cfg)
    if path is None:
        return None
    loop = asyncio.get_running_loop()
    found = await loop.run_in_executor(None, scache_find, path, _scache_key(key))
    if found is None:
        return None
    props, fd = found
    try:
        info = json.loads(props)
        sock = socket.socket(fileno=fd)
    except (ValueError, OSError):
        os.close(fd)
        return None
    try:
        sock.setblocking(False)
        if sock.family == socket.AF_UNIX:
            reader, writer = await asyncio.open_unix_connection(sock=sock)
        else:
            reader, writer = await asyncio.open_connection(sock=sock)
    except OSError:
        sock.close()
        return None
    session = Session(Target(**info["target"]), reader, writer, st)
    session.features = dict(info["features"])
    session.created = time.monotonic() - float(info["age"])
    session.uses = int(info["uses"])
    session.reused = True
    return session


async def _scache_give(job, st: Settings, key: tuple, session: Session) -> bool:
    """Hand a plain-text session to the shared cache; True when it took it."""
    path = _scache_path(job.cfg)
    if path is None or session.tls:
        return False
    t = session.target
    props = json.dumps(
        {
            "target": {"host": t.host, "addr": t.addr, "port": t.port, "unix": t.unix},
            "features": session.features,
            "age": time.monotonic() - session.created,
            "uses": session.uses,
        }
    ).encode()
    sock = session.writer.get_extra_info("socket")
    if sock is None:
        return False
    loop = asyncio.get_running_loop()
    ok = await loop.run_in_executor(
        None, scache_save, path, _scache_key(key), props, sock.fileno(), st.cache_time_limit
    )
    if ok:
        session.close()  # the cache holds its own descriptor of the connection
    return ok


async def _finish_session(job, st, key, session, reusable: bool) -> None:
    if reusable and session.alive() and _cacheable(st, key[1], session):
        # this process keeps a few idle sessions per next hop; the surplus
        # goes to the shared cache, where the other smtp processes find it
        if session_cache.count(key) >= LOCAL_IDLE_PER_KEY and await _scache_give(
            job, st, key, session
        ):
            return
        session_cache.put(key, session, st.cache_time_limit)
    else:
        await session.quit()


async def _open(target, st, dest: str, cfg=None, sender: str = ""):
    """connect(), and again without TLS when the TLS handshake fails and TLS is
    optional; at the DANE levels the server's TLSA records set the level first."""
    dane = None
    if st.tls_level in DANE_LEVELS:
        policy = await dane_policy(target, dest, cfg, st.tls_level, st.lmtp)
        if policy.refusal is not None:
            raise SessionError(*policy.refusal)
        level = wrapper_level(policy.level) if st.tls.wrapper else policy.level
        st = dataclasses.replace(st, tls_level=level)
        dane = policy if policy.level == "dane" else None
    if st.tls_required:
        return await connect(target, st, True, dest, dane, sender)
    allow_tls = _no_tls.get(target.relay, 0) < time.monotonic()
    try:
        return await connect(target, st, allow_tls, dest, sender=sender)
    except TlsFailed as exc:
        log.warning("%s; trying without TLS", exc.reason)
        _no_tls[target.relay] = time.monotonic() + NO_TLS_RETRY
        return await connect(target, st, False, dest, sender=sender)


def _give_up(job: DeliveryJob, err: SessionError, relay: str) -> None:
    if err.dsn.startswith("5"):
        job.bounce_all(err.reason, err.dsn, relay, err.reply, err.mta)
    else:
        dsn = err.dsn if err.dsn.startswith("4") else "4.4.2"
        job.defer_all(err.reason, dsn, relay, err.reply, err.mta)


async def deliver_over(job: DeliveryJob, lmtp: bool) -> None:
    """Deliver job's pending recipients over SMTP or LMTP."""
    if not job.pending():
        return
    source = (job.req.attrs.get("source_address", ""), job.req.attrs.get("helo_name", ""))
    st = Settings.of(job.cfg, lmtp).for_nexthop(job.req.nexthop).with_source(*source)
    reuse = job.req.attrs.get("reuse_count_limit", "")
    if reuse.isdigit():
        st = st.with_reuse_limit(int(reuse))  # the site's per_connection (qmgr/shaping.py)
    sts = await mta_sts.delivery_policy(job.cfg, st, job.req.nexthop, lmtp)
    st = mta_sts.enforce(st, sts)
    refusal = st.tls_refusal()
    sasl_problem = st.sasl.config_error()
    if refusal is None and sasl_problem is not None:
        refusal = ("4.3.5", sasl_problem)
    if refusal is not None:
        dsn, reason = refusal
        log.warning("%s: %s", job.req.queue_id, reason)
        job.defer_all(reason, dsn)
        return
    try:
        out = Outgoing(job, st.line_length_limit, GenericMapper.of(job.cfg, lmtp))
    except MapRetry as exc:
        job.defer_all(f"{param_name(lmtp, 'generic_maps')} lookup error: {exc}", "4.3.0")
        return
    except DkimError as exc:
        # generic mapping changed signed headers and the signature could not be remade
        job.defer_all(f"cannot sign the message again after generic mapping: {exc}", "4.7.0")
        return
    key = _cache_key(lmtp, job.req.nexthop, source)
    tries = _Tries()

    # a kept session first (the shared cache holds plain-text sessions only);
    # none with sender-dependent SASL credentials (nothing is kept then)
    shared = not st.tls_required and not st.sasl.per_sender
    while job.pending() and not st.sasl.per_sender:
        session = session_cache.take(key)
        if session is None and shared:
            session = await _scache_take(job, st, key)
            shared = session is not None
        if session is None:
            break
        if session.st.tls_policy != st.tls_policy or (st.tls_required and not session.tls):
            session.close()  # kept under another TLS policy: never used for this one
            continue
        if st.source and session.local != st.source:
            session.close()  # not from the source this request asked for
            continue
        job.conn_time = time.time() - job.started
        try:
            reusable = await session.transact(job, out, out.recipients_for(job))
        except StaleSession:
            continue
        except SessionError as exc:
            session.close()
            if exc.final or not job.pending():
                _give_up(job, exc, session.target.relay)
                return
            break
        await job.settle()  # done marks before QUIT or caching: a crash then repeats nothing
        await _finish_session(job, st, key, session, reusable)
        if not out.retry:
            return
        tries.soft_relays.add(session.target.relay)  # the other servers may take the rest
        break

    try:
        targets: Targets | None = await resolve_nexthop(job.req.nexthop, job.cfg, lmtp)
        missed: NexthopError | None = None
    except NexthopError as exc:
        targets, missed = None, exc
    try:
        targets = mta_sts.screen_targets(targets, sts, job.req.nexthop, job.req.queue_id)
    except mta_sts.StsError as exc:  # enforce, and no MX host the policy names
        log.warning("%s: %s", job.req.queue_id, exc)
        job.defer_all(str(exc), "4.7.5")
        return
    if targets is not None and await _try_site(job, st, key, out, targets, tries, job.req.nexthop):
        return
    fallbacks = _fallback_relays(job, lmtp, targets, missed, tries)
    for relay in fallbacks:
        if not out.recipients_for(job):
            return
        relay_st = st.for_nexthop(relay)
        refusal = relay_st.tls_refusal()
        if refusal is not None:  # this relay's TLS policy cannot be served: not tried
            log.warning("%s: %s: %s", job.req.queue_id, relay, refusal[1])
            tries.last, tries.last_relay = SessionError(*refusal, site=True), relay
            continue
        try:
            relay_targets = await resolve_nexthop(relay, job.cfg, lmtp)
        except NexthopError as exc:
            tries.missed = exc
            continue
        key = _cache_key(lmtp, relay, source)
        if await _try_site(job, relay_st, key, out, relay_targets, tries, relay):
            return
    if not job.pending():
        return
    last = tries.last
    if last is None:
        gone = tries.missed if fallbacks else missed
        if gone is None:
            job.defer_all("no server could be tried", "4.4.1")
        elif gone.dsn.startswith("5") and not fallbacks:
            job.bounce_all(gone.reason, gone.dsn)
        else:  # a fallback relay that cannot be found is this site's problem: wait
            job.defer_all(gone.reason, "4" + gone.dsn[1:])
    elif tries.site_only:
        dsn = last.dsn if last.dsn.startswith("4") else "4.4.1"
        job.hop_failed(dsn, last.reason, tries.last_relay, last.reply, last.mta)
    else:
        _give_up(job, last, tries.last_relay)


@dataclass
class _Tries:
    """What the sessions of one request ran into, across the next hop and its fallbacks."""

    last: SessionError | None = None
    last_relay: str = "none"
    site_only: bool = True  # no server became usable
    final: bool = False  # content was sent: no other server may be tried
    missed: NexthopError | None = None  # the last fallback relay that could not be resolved
    soft_relays: set[str] = field(default_factory=set)  # servers that gave a recipient 4xx


async def _try_site(
    job, st: Settings, key: tuple, out: Outgoing, targets, tries: _Tries, dest: str
) -> bool:
    """Try targets in order (up to smtp_mx_session_limit sessions); True when a
    transaction ran to its end and no recipient is left for another server
    (every one has its status, none only deferred by a 4xx reply)."""
    sessions = 0
    session_limit = st.mx_session_limit if st.mx_session_limit > 0 else len(targets)
    for target in targets:
        if sessions >= session_limit or not out.recipients_for(job):
            break
        if target.relay in tries.soft_relays:
            continue  # it deferred these recipients already in this request
        too_soon = await connection_turn(job)  # a shaped site's connections_per_minute
        if too_soon is not None:
            job.defer_all(too_soon, "4.7.0")
            return True
        try:
            session = await _open(target, st, dest, job.cfg, job.req.sender)
        except SessionError as exc:
            tries.last, tries.last_relay = exc, target.relay
            if isinstance(exc, SaslFailed):
                tries.site_only = False  # the server answered: only this mail waits
            continue
        sessions += 1
        job.conn_time = time.time() - job.started
        try:
            reusable = await session.transact(job, out, out.recipients_for(job))
        except StaleSession:  # cannot happen on a fresh session; be safe
            session.close()
            continue
        except SessionError as exc:
            session.close()
            tries.last, tries.last_relay, tries.site_only = exc, target.relay, False
            if exc.final:
                tries.final = True
                return False
            continue
        await job.settle()
        await _finish_session(job, st, key, session, reusable)
        if not out.retry:
            return True
        tries.soft_relays.add(target.relay)
    return False


def _fallback_relays(
    job, lmtp: bool, targets: Targets | None, missed: NexthopError | None, tries: _Tries
) -> list[str]:
    """The smtp_fallback_relay destinations to try now, in order; [] when none apply.

    Not for LMTP, not after the content went out, not when the next hop
    failed for good (null MX, a loop, a malformed next hop) rather than
    being unknown or unreachable, not when this host is one of its MX
    hosts (the fallback could send it back), and never the next hop itself."""
    if lmtp or tries.final:
        return []
    if missed is not None and missed.dsn not in FALLBACK_NOT_FOUND and missed.dsn[:1] != "4":
        return []
    if targets is not None and targets.mx_self:
        return []
    here = job.req.nexthop.strip().lower()
    return [r for r in job.cfg.get_list("smtp_fallback_relay") if r.strip().lower() != here]


async def deliver(job: DeliveryJob) -> None:
    """The smtp agent's deliver()."""
    await deliver_over(job, False)


async def deliver_lmtp(job: DeliveryJob) -> None:
    """The lmtp agent's deliver()."""
    await deliver_over(job, True)


deliver.verifies = True  # Session.transact() stops after RCPT TO for a probe
deliver_lmtp.verifies = True


def make_deliver(lmtp: bool):
    return deliver_lmtp if lmtp else deliver
