"""smtpd.milters - smtpd_milters: the milter chain at each stage of an SMTP session

SYNOPSIS
    from mta.smtpd.milters import SmtpdMilters, milter_refuse
    server.milters = SmtpdMilters.from_config(cfg)        # None without milters
    session.milters = server.milters.session(session)     # None for a DISABLEd client
    verdict = await session.milters.connect(session)      # ... helo, mail, rcpt, data, unknown
    job = session.milters.wrap(job)                       # content waits for the milters
    outcome = await session.milters.end_of_message(session)   # "", "done" or "close"

DESCRIPTION
    Each SMTP session gets its own connections to the milters of
    smtpd_milters, or of the list smtpd_milter_maps gives for the
    client address (DISABLE: none). The connect event goes out before
    the greeting; HELO, MAIL, RCPT, DATA and unknown commands after the
    restrictions accepted them. A refusal is the milter's reply (550
    5.7.1 Command rejected, 451 4.7.1 Service unavailable - try again
    later, or its own text), logged as Postfix does:

        NOQUEUE: milter-reject: RCPT from host[addr]: 550 5.7.1 Command
        rejected; from=<s> to=<r> proto=ESMTP helo=<h>

    A refusal at connect answers every MAIL of the session; a 421
    ends the session.

    While milters are active the message is spooled (milter.job) and
    shown to them at end of data; then their edits are applied and the
    message goes into cleanup, whose fsync comes before the 250. At end
    of message:

        QUEUEID: milter-reject: END-OF-MESSAGE from host[addr]: 5.7.1
        Command rejected; from=<s> to=<r> proto=ESMTP helo=<h>
        QUEUEID: milter-discard: END-OF-MESSAGE from host[addr]: milter
        triggers DISCARD action; from=<s> to=<r> proto=ESMTP helo=<h>
        QUEUEID: milter-hold: END-OF-MESSAGE from host[addr]: milter
        triggers HOLD action; from=<s> to=<r> proto=ESMTP helo=<h>: REASON

    A held message goes to hold/. Headers the milters add or change are
    looked up in milter_header_checks (REJECT, DISCARD, HOLD, IGNORE,
    STRIP, WARN, INFO, REPLACE; other actions are logged and ignored).

    Macros ({j}, {_}, {daemon_name}, {daemon_addr}, {v},
    {client_addr}, {client_name}, {client_port}, {client_ptr}, {i},
    {auth_type}, {auth_authen}, {auth_author}, {mail_addr},
    {mail_host}, {mail_mailer}, {rcpt_addr}, {rcpt_host},
    {rcpt_mailer}, {tls_version}, {cipher}, {cipher_bits},
    {cert_subject}, {cert_issuer}) are filled from the session; each
    stage sends those its milter_*_macros list (or the milter's
    SETSYMLIST) names.

SECURITY
    Sees untrusted SMTP input and passes it to the milters the
    configuration names. Runs inside smtpd, unprivileged.

SEE ALSO
    mta/milter/ (the protocol, chain and edits), MILTER_README
"""

from __future__ import annotations

from mta import log
from mta.maps import MapError, MapRetry, Maps
from mta.milter.chain import (
    ACTION_DISCARD,
    ACTION_SHUTDOWN,
    CONTINUE,
    Decision,
    MilterChain,
)
from mta.milter.header_checks import MilterHeaderChecks
from mta.milter.job import MilterJob
from mta.milter.settings import MilterSettings, parse_milters
from mta.smtpd.checks import Verdict
from mta.smtpd.transcript import NOTIFY_POLICY
from mta.trivial_rewrite.resolve import Resolver
from mta.trivial_rewrite.rewrite import Rewriter

MILTER_DISABLE = "DISABLE"  # smtpd_milter_maps: no milters for this client


class MilterVerdict(Verdict):
    """A refusal already logged as milter-reject (the session does not log it again)."""

    logged = True


class SmtpdMilters:
    """The smtpd process's milter configuration."""

    def __init__(self, cfg) -> None:
        self.cfg = cfg
        self.settings = MilterSettings.from_config(cfg)
        self.specs = parse_milters(cfg.get("smtpd_milters"), self.settings)
        self.maps = Maps.from_param(cfg, "smtpd_milter_maps")
        self.header_checks = Maps.from_param(cfg, "milter_header_checks")
        self.size_limit = cfg.get_size("message_size_limit")
        self.myhostname = cfg.get("myhostname")
        self.by_value: dict[str, list] = {}
        self.rewriter = self.resolver = None  # trivial-rewrite, made on first use

    @classmethod
    def from_config(cls, cfg) -> SmtpdMilters | None:
        if not cfg.get("smtpd_milters").strip() and not cfg.get("smtpd_milter_maps").strip():
            return None
        return cls(cfg)

    def specs_for(self, addr: str) -> list:
        """smtpd_milter_maps' answer for the client address, else smtpd_milters."""
        if not self.maps:
            return self.specs
        try:
            value = self.maps.lookup(addr)
        except (MapRetry, MapError) as exc:
            log.warning("smtpd_milter_maps lookup for %s: %s", addr, exc)
            return self.specs
        if value is None:
            return self.specs
        value = value.strip()
        if value.upper() == MILTER_DISABLE:
            return []
        found = self.by_value.get(value)
        if found is None:
            try:
                found = self.by_value[value] = parse_milters(value, self.settings)
            except ValueError as exc:
                log.warning("smtpd_milter_maps: %s; using smtpd_milters", exc)
                return self.specs
        return found

    def route(self, addr: str) -> tuple[str, str]:
        """({x_host}, {x_mailer}): the next hop and transport trivial-rewrite gives addr
        (for a table that fails: the domain and "smtp")."""
        if not addr:
            return "", ""
        try:
            if self.resolver is None:
                self.rewriter, self.resolver = Rewriter(self.cfg), Resolver(self.cfg)
            found = self.resolver.resolve(self.rewriter.rewrite(addr, "local"))
            return found.nexthop, found.transport
        except (MapRetry, MapError, ValueError, OSError):
            return addr.rpartition("@")[2], "smtp"

    def session(self, session) -> SessionMilters | None:
        specs = self.specs_for(session.st.client_addr)
        if not specs:
            return None
        return SessionMilters(self, MilterChain(specs, self.settings, self.size_limit))


class SessionMilters:
    """One session's milters; see the module docstring."""

    def __init__(self, owner: SmtpdMilters, chain: MilterChain) -> None:
        self.owner = owner
        self.chain = chain
        self.macros: dict[str, str] = {}
        self.in_message = False  # a MAIL went to the milters and its message is not done

    # ------------------------------------------------------------ macros
    def _base_macros(self, session) -> None:
        st, m, s = session.st, self.macros, self.owner.settings
        m["j"] = self.owner.myhostname
        m["daemon_name"] = s.daemon_name
        m["v"] = s.version
        if st.server_addr:
            m["daemon_addr"] = st.server_addr
            m["daemon_port"] = str(st.server_port)
        m["_"] = f"{st.client_name} [{st.client_addr}]"
        m["client_addr"] = st.client_addr
        m["client_name"] = st.client_name
        m["client_port"] = str(st.client_port)
        m["client_ptr"] = st.reverse_name

    def _tls_macros(self, session) -> None:
        peer = getattr(session, "tls_peer", None)
        for key in ("tls_version", "cipher", "cipher_bits", "cert_subject", "cert_issuer"):
            self.macros.pop(key, None)
        if peer is None:
            return
        self.macros["tls_version"] = peer.protocol or ""
        self.macros["cipher"] = peer.cipher or ""
        self.macros["cipher_bits"] = str(peer.bits or 0)
        if peer.present and peer.trusted:
            self.macros["cert_subject"] = peer.peer_cn
            self.macros["cert_issuer"] = peer.issuer_cn

    # ------------------------------------------------------------ logging
    def _log(self, session, what: str, stage: str, text: str, queue_id: str = "NOQUEUE"):
        st = session.st
        extra = []
        if st.sender is not None:
            extra.append(f"from=<{st.sender}>")
        rcpt = st.recipient
        if stage in ("DATA", "END-OF-MESSAGE") and session.recipients:
            rcpt = session.recipients[0][0]
        if rcpt and stage in ("RCPT", "DATA", "END-OF-MESSAGE"):
            extra.append(f"to=<{rcpt}>")
        extra.append(f"proto={st.protocol}")
        if st.helo_name:
            extra.append(f"helo=<{st.helo_name}>")
        log.info(
            "%s: milter-%s: %s from %s: %s; %s",
            queue_id,
            what,
            stage,
            session.client_text,
            text,
            " ".join(extra),
        )

    def _verdict(self, session, stage: str, decision: Decision) -> MilterVerdict | None:
        if decision.action == CONTINUE:
            return None
        if decision.action == ACTION_DISCARD:
            self._log(session, "discard", stage, "milter triggers DISCARD action")
            session.discard = True
            return None
        self._log(session, "reject", stage, decision.reply)
        disconnect = decision.action == ACTION_SHUTDOWN
        kind = "defer" if decision.reply[:1] == "4" else "reject"
        return MilterVerdict(decision.reply, kind, disconnect, NOTIFY_POLICY)

    # ------------------------------------------------------------ stages
    async def connect(self, session) -> MilterVerdict | None:
        self._base_macros(session)
        st = session.st
        decision = await self.chain.connect(
            st.client_name, st.client_addr, st.client_port, self.macros
        )
        return self._verdict(session, "CONNECT", decision)

    async def helo(self, session) -> MilterVerdict | None:
        self._tls_macros(session)
        decision = await self.chain.helo(session.st.helo_name, self.macros)
        return self._verdict(session, "HELO", decision)

    async def mail(self, session, sender: str, params: dict) -> MilterVerdict | None:
        if self.in_message:
            self.abort()
        m = self.macros
        st = session.st
        m.pop("i", None)
        m["mail_addr"] = sender
        m["mail_host"], m["mail_mailer"] = self.owner.route(sender)
        for key in ("auth_type", "auth_authen", "auth_author"):
            m.pop(key, None)
        if st.sasl_username:
            m["auth_type"] = st.sasl_method
            m["auth_authen"] = st.sasl_username
            if st.sasl_sender:
                m["auth_author"] = st.sasl_sender
        args = [_esmtp(k, v) for k, v in params.items()]
        self.in_message = True
        decision = await self.chain.mail(sender, args, self.macros)
        verdict = self._verdict(session, "MAIL", decision)
        if verdict is not None:
            self.abort()
        return verdict

    async def rcpt(self, session, rcpt: str, params: list) -> MilterVerdict | None:
        m = self.macros
        m["rcpt_addr"] = rcpt
        m["rcpt_host"], m["rcpt_mailer"] = self.owner.route(rcpt)
        decision = await self.chain.rcpt(rcpt, params, self.macros)
        return self._verdict(session, "RCPT", decision)

    async def rcpt_rejected(self, session, rcpt: str, rest: bytes, reply: str) -> None:
        """A recipient the restrictions refused, for milters that asked (SMFIP_RCPT_REJ):
        {rcpt_mailer} "error", {rcpt_host} the enhanced status code, {rcpt_addr} the text."""
        words = reply.replace("\r\n", " ").split(" ", 2)
        code = words[1] if len(words) > 1 and words[1][:1].isdigit() and "." in words[1] else ""
        text = (words[2] if code and len(words) > 2 else " ".join(words[1:])).strip()
        macros = dict(self.macros, rcpt_addr=text, rcpt_host=code, rcpt_mailer="error")
        args = [a.decode("utf-8", "replace") for a in rest.split()]
        await self.chain.rcpt_rejected(rcpt, args, macros)

    async def data(self, session) -> MilterVerdict | None:
        if session.st.queue_id:
            self.macros["i"] = session.st.queue_id
        decision = await self.chain.data(self.macros)
        verdict = self._verdict(session, "DATA", decision)
        if verdict is not None and session.job is not None:
            session.job.abort()
            session.job = None
            self.abort()
        return verdict

    async def unknown(self, session, line: bytes) -> MilterVerdict | None:
        decision = await self.chain.unknown(line, self.macros)
        return self._verdict(session, "UNKNOWN", decision)

    def wrap(self, job, sender: str) -> MilterJob:
        return MilterJob(job, sender, self.owner.size_limit)

    async def end_of_message(self, session) -> str:
        """The content phase; "" to go on, "done" when answered, "close" to hang up."""
        job = session.job
        if not isinstance(job, MilterJob):
            return ""
        self.in_message = False
        queue_id = job.queue_id
        checker = MilterHeaderChecks(self.owner.header_checks, queue_id, self._where(session))
        decision = await job.run(self.chain, self.macros, checker)
        if decision.action == CONTINUE and checker.decision is not None:
            decision = checker.decision
        if decision.action == CONTINUE:
            if checker.hold is not None:
                session.hold = True  # logged as "hold: header ..." by the check
            if decision.hold is not None:
                self._log_hold(session, queue_id, decision.hold)
                session.hold = True
            return ""
        session.job = None
        job.abort()
        if decision.action == ACTION_DISCARD:
            self._log(
                session, "discard", "END-OF-MESSAGE", "milter triggers DISCARD action", queue_id
            )
            session.reset_transaction()
            session.reply(f"250 2.0.0 Ok: queued as {queue_id}")
            return "done"
        # at end of message the log shows the enhanced code and text, as Postfix's cleanup
        text = decision.reply
        shown = text[4:] if text[:3].isdigit() else text
        self._log(session, "reject", "END-OF-MESSAGE", shown.replace("\r\n", " "), queue_id)
        session.reset_transaction()
        if decision.action == ACTION_SHUTDOWN:
            session.reply(text)
            return "close"
        await session.error(text, NOTIFY_POLICY)
        return "done"

    def _where(self, session) -> str:
        """ "from host[addr]; from=<s> to=<r> proto=P helo=<h>" for header check lines."""
        st = session.st
        rcpt = session.recipients[0][0] if session.recipients else ""
        helo = f" helo=<{st.helo_name}>" if st.helo_name else ""
        return (
            f"from {session.client_text}; from=<{st.sender or ''}> to=<{rcpt}> "
            f"proto={st.protocol}{helo}"
        )

    def _log_hold(self, session, queue_id: str, reason: str) -> None:
        st = session.st
        rcpt = session.recipients[0][0] if session.recipients else ""
        helo = f" helo=<{st.helo_name}>" if st.helo_name else ""
        log.info(
            "%s: milter-hold: END-OF-MESSAGE from %s: milter triggers HOLD action; "
            "from=<%s> to=<%s> proto=%s%s: %s",
            queue_id,
            session.client_text,
            st.sender or "",
            rcpt,
            st.protocol,
            helo,
            reason,
        )

    def abort(self) -> None:
        """The transaction is gone (RSET, HELO, a refusal): SMFIC_ABORT."""
        if self.in_message:
            self.in_message = False
            for _, client in self.chain.active():
                client.abort_nowait()
            self.chain.done.clear()

    def close(self) -> None:
        for client in self.chain.clients:
            client.quit_nowait()


def _esmtp(key: bytes, value: bytes | None) -> str:
    text = key.decode("ascii", "replace")
    return text if value is None else text + "=" + value.decode("utf-8", "replace")


async def start_milters(session) -> bool:
    """The milters' connect event for the session's client (at the greeting, and again
    after XCLIENT names a new client): a refusal answers every MAIL from then on and
    ends the milters; False when a 421 was sent and the session must end."""
    if session.milters is not None:
        session.milters.close()  # the old client's conversation is over
        session.milters = None
    if session.server.milters is None:
        return True
    session.milters = session.server.milters.session(session)
    if session.milters is None:
        return True  # smtpd_milter_maps: DISABLE for this client
    verdict = await session.milters.connect(session)
    if verdict is not None and verdict.disconnect:
        session.reply(verdict.reply)
        return False
    if verdict is not None:
        session.milters.close()
        session.milters, session.reject_stage = None, verdict
    return True


async def milter_refuse(session, verdict) -> bool:
    """Answer a milter's refusal (already logged); False when the session must end."""
    if verdict.disconnect:
        session.note(verdict.error_class)
        session.reply(verdict.reply)
        return False
    return await session.error(verdict.reply, verdict.error_class)
