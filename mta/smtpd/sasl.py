"""smtpd.sasl - SMTP AUTH in smtpd (RFC 4954): mechanisms, the exchange, the settings

SYNOPSIS
    from mta.smtpd.sasl import SmtpdSasl, auth_command, auth_continue
    sasl = SmtpdSasl(cfg)                          # once per smtpd process
    keywords = await sasl.ehlo_keywords(session)   # ["AUTH PLAIN LOGIN"] or []
    await auth_command(session, arg)               # the AUTH command
    await auth_continue(session)                   # each client response after a 334
    problems = setup_problems(cfg)                 # [(param, text, fatal)] for mta check

DESCRIPTION
    With smtpd_sasl_auth_enable = yes, EHLO announces "AUTH" and the
    mechanisms of the backend that smtpd_sasl_type names ("AUTH=" too,
    with broken_sasl_auth_clients = yes):

        mta       the built-in table of password hashes (smtpd/sasl_mta.py,
                  managed by "mta sasl"), PLAIN and LOGIN
        dovecot   Dovecot's auth server on smtpd_sasl_path
                  (smtpd/sasl_dovecot.py), whatever mechanisms it offers
        cyrus     Postfix's default, not supported: mta check and start
                  refuse it when AUTH is enabled

    A mechanism is announced only when the security options allow it:
    smtpd_sasl_security_options without TLS, smtpd_sasl_tls_security_
    options once the session runs over TLS. noplaintext drops PLAIN and
    LOGIN, noanonymous ANONYMOUS, nodictionary and noactive the
    mechanisms open to those attacks; mutual_auth and forward_secrecy
    keep only mechanisms that give them. smtpd_sasl_mechanism_filter
    (a match list of names, /files and tables; "!" excludes) keeps only
    the mechanisms it matches; its default leaves out EXTERNAL, which
    smtpd does not implement. With smtpd_tls_auth_only (or
    smtpd_tls_security_level = encrypt) nothing is announced before
    STARTTLS; "AUTH" in smtpd_discard_ehlo_keywords hides AUTH and
    disables it. Clients in smtpd_sasl_exceptions_networks are not told
    about AUTH (for clients that would use it where they should not),
    but may still use it.

    The AUTH command, with Postfix's replies: 503 5.5.1 without
    EHLO when smtpd_helo_required, when AUTH is not enabled, in a mail
    transaction, or a second time; 504 5.5.4 before STARTTLS with
    smtpd_tls_auth_only; 501 5.5.4 for bad syntax; 450 4.7.1 past
    smtpd_client_auth_rate_limit (anvil, smtpd/limits.py). Then the
    exchange: an initial response on the AUTH line ("=" is an empty
    one), "334 CHALLENGE" and one client line per challenge, at most
    smtpd_sasl_response_limit bytes (a longer one is skipped whole and
    gets 500 5.5.6), "*" cancels (501 5.7.0 Authentication aborted),
    bad base64 gets 501 5.5.2 (RFC 4954 section 4). The end is
    235 2.7.0 Authentication successful, 535 5.7.8 Error: authentication
    failed: REASON, or 454 4.7.0 Temporary authentication failure:
    REASON when the backend cannot answer. Each failure counts as an
    error toward smtpd_soft_error_limit and smtpd_hard_error_limit, so
    a client that guesses passwords is slowed and then disconnected,
    and is logged as "warning: HOST[ADDR]: SASL MECH authentication
    failed: REASON, sasl_username=USER".

    An authenticated session is marked for the restrictions
    (permit_sasl_authenticated, smtpd/sasl_checks.py), its messages
    carry the attributes sasl_method, sasl_username and (from MAIL
    FROM's AUTH= parameter) sasl_sender, the "client=" log line names
    them, Received: says "with ESMTPA" (ESMTPSA over TLS) and, with
    smtpd_sasl_authenticated_header, "(Authenticated sender: USER)".

SECURITY
    Sees untrusted responses, bounded by smtpd_sasl_response_limit and
    line_length_limit. Passwords are passed to the backend only; the
    session transcript (notify_classes) shows "AUTH MECH" without the
    initial response, and the responses not at all.

STANDARDS
    RFC 4954 (SMTP AUTH), RFC 4616 (PLAIN), RFC 3848 (ESMTPA),
    draft-murchison-sasl-login (LOGIN).

SEE ALSO
    mta/smtpd/sasl_mta.py, mta/smtpd/sasl_dovecot.py, mta/cli/sasl.py
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from mta import log
from mta.common.match_list import AddrList, NameList
from mta.smtpd.transcript import NOTIFY_POLICY, NOTIFY_PROTOCOL

SASL_TYPES = ("mta", "dovecot", "cyrus")  # the values of smtpd_sasl_type
# smtpd_sasl_*security_options: option -> (what it does, mechanism flag)
SECURITY_OPTIONS = {
    "noplaintext": ("exclude", "plaintext"),
    "noanonymous": ("exclude", "anonymous"),
    "nodictionary": ("exclude", "dictionary"),
    "noactive": ("exclude", "active"),
    "mutual_auth": ("require", "mutual-auth"),
    "forward_secrecy": ("require", "forward-secrecy"),
}
AUTH_STATUS_MORE = "more"  # Step.status: send the challenge, read a response
AUTH_STATUS_OK = "ok"  # authenticated as Step.user
AUTH_STATUS_FAIL = "fail"  # refused: Step.text says why
AUTH_STATUS_TEMP = "temp"  # the backend could not decide: Step.text says why
LOGIN_USER_PROMPT = b"Username:"  # the LOGIN mechanism's two challenges
LOGIN_PASS_PROMPT = b"Password:"


class SaslSetupError(Exception):
    """The SASL settings cannot be served; param names the parameter."""

    def __init__(self, param: str, text: str) -> None:
        super().__init__(f"{param}: {text}")
        self.param = param


@dataclass
class Step:
    """One step of a conversation."""

    status: str  # AUTH_STATUS_*
    data: bytes = b""  # the challenge (more)
    text: str = ""  # the reason (fail, temp)
    user: str = ""  # the login name, when known


class PasswordConversation:
    """PLAIN and LOGIN against a check(user, password) coroutine (the mta backend)."""

    def __init__(self, mech: str, check) -> None:
        self.mech = mech
        self.check = check
        self.user: str | None = None  # LOGIN: the name, once the client gave it
        self.started = False  # a first, empty challenge went out

    async def step(self, data: bytes | None) -> Step:
        if data is None and not self.started:
            # no initial response: PLAIN gets an empty challenge, LOGIN asks the name
            self.started = True
            return Step(AUTH_STATUS_MORE, b"" if self.mech == "PLAIN" else LOGIN_USER_PROMPT)
        data = data or b""
        if self.mech == "PLAIN":
            parts = data.split(b"\0")
            if len(parts) != 3:
                return Step(AUTH_STATUS_FAIL, text="malformed PLAIN response")
            authzid, authcid, password = parts
            if authzid and authzid != authcid:
                return Step(AUTH_STATUS_FAIL, text="authorization identity not allowed")
            return await self._check(authcid, password)
        if self.user is None:
            self.user = data.decode("utf-8", "replace")
            return Step(AUTH_STATUS_MORE, LOGIN_PASS_PROMPT, user=self.user)
        return await self._check(self.user.encode("utf-8"), data)

    async def _check(self, user: bytes, password: bytes) -> Step:
        try:
            name, secret = user.decode("utf-8"), password.decode("utf-8")
        except UnicodeDecodeError:
            return Step(AUTH_STATUS_FAIL, text="authentication failure")
        if not name:
            return Step(AUTH_STATUS_FAIL, text="empty login name")
        status, value = await self.check(name, secret)
        if status == AUTH_STATUS_OK:
            return Step(AUTH_STATUS_OK, user=value)
        return Step(status, text=value, user=name)


def allowed(flags: frozenset[str], options: frozenset[str]) -> bool:
    """Whether a mechanism with flags passes the security options."""
    for option in options:
        action, flag = SECURITY_OPTIONS[option]
        if (action == "exclude") == (flag in flags):
            return False
    return True


def _options(cfg, param: str) -> frozenset[str]:
    words = frozenset(w.lower() for w in cfg.get_list(param))
    bad = sorted(words - SECURITY_OPTIONS.keys())
    if bad:
        raise SaslSetupError(
            param, f'unknown value "{bad[0]}" (expected {", ".join(SECURITY_OPTIONS)})'
        )
    return words


def make_backend(cfg):
    """The backend smtpd_sasl_type names; SaslSetupError when it cannot be used."""
    kind = cfg.get("smtpd_sasl_type").strip().lower()
    if kind == "mta":
        from mta.smtpd.sasl_mta import MtaBackend

        return MtaBackend(cfg)
    if kind == "dovecot":
        from mta.smtpd.sasl_dovecot import DovecotBackend

        return DovecotBackend(cfg)
    if kind == "cyrus":
        raise SaslSetupError("smtpd_sasl_type", "cyrus is not supported: use dovecot or mta")
    raise SaslSetupError(
        "smtpd_sasl_type", f'unknown value "{kind}" (expected {" or ".join(SASL_TYPES)})'
    )


def setup_problems(cfg) -> list[tuple[str, str, bool]]:
    """What mta check says about smtpd's SASL settings: [(param, text, fatal)]."""
    if not cfg.get_bool("smtpd_sasl_auth_enable"):
        return []
    out: list[tuple[str, str, bool]] = []
    for param in ("smtpd_sasl_security_options", "smtpd_sasl_tls_security_options"):
        try:
            _options(cfg, param)
        except SaslSetupError as exc:
            out.append((param, str(exc), True))
    try:
        backend = make_backend(cfg)
    except SaslSetupError as exc:
        return [*out, (exc.param, f"SMTP AUTH not available: {exc}", True)]
    for param, text in backend.problems():
        out.append((param, f"SMTP AUTH: {text}", False))
    return out


class SmtpdSasl:
    """The SASL settings and backend of one smtpd process; see the module docstring."""

    def __init__(self, cfg, tls_required: bool = False) -> None:
        self.cfg = cfg
        self.enabled = cfg.get_bool("smtpd_sasl_auth_enable")
        self.tls_only = cfg.get_bool("smtpd_tls_auth_only") or tls_required
        self.broken_clients = cfg.get_bool("broken_sasl_auth_clients")
        self.auth_header = cfg.get_bool("smtpd_sasl_authenticated_header")
        self.response_limit = max(cfg.get_int("smtpd_sasl_response_limit"), 1)
        self.discarded = "AUTH" in {k.upper() for k in cfg.get_list("smtpd_discard_ehlo_keywords")}
        # clients to which EHLO does not announce AUTH (they may still use it)
        self.exceptions = AddrList(cfg.get_list("smtpd_sasl_exceptions_networks"), cfg)
        filters = cfg.get_list("smtpd_sasl_mechanism_filter")
        self.mech_filter = NameList(filters, cfg) if filters else None
        self.backend = None
        self.options = self.tls_options = frozenset()
        if not self.enabled:
            return
        try:
            self.options = _options(cfg, "smtpd_sasl_security_options")
            self.tls_options = _options(cfg, "smtpd_sasl_tls_security_options")
            self.backend = make_backend(cfg)
        except SaslSetupError as exc:
            log.warning("SMTP AUTH disabled: %s", exc)
            self.backend = None

    def active(self, session) -> bool:
        """Whether AUTH may be used in this session now (before the mechanisms)."""
        return (
            self.backend is not None
            and not self.discarded
            and not session.server.stand_alone
            and (session.tls or not self.tls_only)
        )

    async def mechanisms(self, session) -> list[str]:
        """The mechanisms the session may use now, in the backend's order."""
        if not self.active(session):
            return []
        options = self.tls_options if session.tls else self.options
        offered = await self.backend.mechanisms()
        return [
            m
            for m, flags in offered.items()
            if allowed(flags, options) and (self.mech_filter is None or self.mech_filter.match(m))
        ]

    async def ehlo_keywords(self, session) -> list[str]:
        st = session.st
        if self.exceptions.match(st.client_addr, st.client_name):
            return []
        mechs = await self.mechanisms(session)
        if not mechs:
            return []
        words = " ".join(mechs)
        return [f"AUTH {words}", f"AUTH={words}"] if self.broken_clients else [f"AUTH {words}"]


@dataclass
class Exchange:
    """An AUTH exchange waiting for the client's next response."""

    mech: str
    conv: object
    user: str = ""


def _decode(text: bytes) -> bytes | None:
    """The base64 text decoded ("=" is empty); None when it is not base64."""
    if text == b"=":
        return b""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def _redact_transcript(session, mech: bytes) -> None:
    """The AUTH line in the session transcript loses its initial response."""
    tr = session.transcript
    if tr is not None and tr and tr[-1] == session.line[: len(tr[-1])]:
        tr[-1] = b"AUTH " + mech


async def auth_command(session, arg: bytes) -> bool:
    """Answer AUTH; False when the session must end. Sets session.sasl_exchange
    when a challenge went out and a response is awaited (auth_continue)."""
    server = session.server
    sasl = server.sasl
    words = arg.split()
    _redact_transcript(session, words[0] if words else b"")
    if server.helo_required and not session.st.helo_name:
        return await session.error("503 5.5.1 Error: send HELO/EHLO first")
    if sasl is None or not sasl.enabled or sasl.backend is None or sasl.discarded:
        return await session.error("503 5.5.1 Error: authentication not enabled")
    if server.stand_alone:
        return await session.error("503 5.5.1 Error: authentication not enabled")
    if session.sender is not None:
        return await session.error("503 5.5.1 Error: MAIL transaction in progress")
    if sasl.tls_only and not session.tls:
        return await session.error(
            "504 5.5.4 Encryption required for requested authentication mechanism"
        )
    if session.st.sasl_username:
        return await session.error("503 5.5.1 Error: already authenticated")
    if len(words) not in (1, 2):
        return await session.error("501 5.5.4 Syntax: AUTH mechanism")
    refusal = await session.anvil.auth() if session.anvil is not None else None
    if refusal is not None:
        return await session.error(refusal, NOTIFY_POLICY)
    # the name goes into logs: printable ASCII only
    mech = "".join(c if c.isprintable() else "?" for c in words[0].decode("ascii", "replace"))
    mech = mech.upper()
    if mech not in await sasl.mechanisms(session):
        return await _failed(
            session, mech, Step(AUTH_STATUS_FAIL, text="Invalid authentication mechanism")
        )
    initial = None
    if len(words) == 2:
        initial = _decode(words[1])
        if initial is None:
            return await _bad_base64(session, mech, "initial")
    ex = Exchange(mech, sasl.backend.start(mech, _session_info(session)))
    return await _after(session, ex, await _step(ex, initial))


async def _step(ex: Exchange, data: bytes | None) -> Step:
    """The backend's next step; an unexpected failure is a temporary one, logged."""
    try:
        return await ex.conv.step(data)
    except Exception as exc:  # noqa: BLE001 - one broken exchange must not end smtpd
        abandon(ex)
        log.warning("SASL %s: unexpected error: %s: %s", ex.mech, type(exc).__name__, exc)
        return Step(AUTH_STATUS_TEMP, text="internal error")


def _session_info(session) -> dict[str, str]:
    """What a backend may pass on (Dovecot's lip, rip, secured)."""
    local = session.transport.get_extra_info("sockname") if session.transport else None
    return {
        "client_addr": session.st.client_addr,
        "client_port": str(session.st.client_port),
        "local_addr": local[0] if isinstance(local, tuple) else "",
        "local_port": str(local[1]) if isinstance(local, tuple) else "",
        "secured": "1" if session.tls else "",
    }


async def auth_continue(session) -> bool:
    """Read the client's response to the last challenge and go on; False to end."""
    ex = session.sasl_exchange
    session.sasl_exchange = None
    try:
        line = await _read_response(session, session.server.sasl.response_limit)
    except BaseException:
        abandon(ex)  # the client went away in the middle
        raise
    if line is None or line == b"*" or _decode(line) is None:
        abandon(ex)
    if line is None:
        log.warning("%s: SASL %s response limit exceeded", session.client_text, ex.mech)
        return await session.error("500 5.5.6 SASL response limit exceeded")
    if line == b"*":
        log.warning("%s: SASL %s authentication aborted", session.client_text, ex.mech)
        return await session.error("501 5.7.0 Authentication aborted")
    data = _decode(line)
    if data is None:
        return await _bad_base64(session, ex.mech, "continued")
    return await _after(session, ex, await _step(ex, data))


def abandon(ex: Exchange) -> None:
    """Let the backend go of an exchange that ends without an answer from it."""
    close = getattr(ex.conv, "close", None)
    if close is not None:
        close()


async def _read_response(session, limit: int) -> bytes | None:
    """One client line without its end; None when longer than limit (skipped whole)."""
    too_long = False
    while True:
        nl = session.inbuf.find(b"\n")
        if nl >= 0:
            line = bytes(session.inbuf[:nl])
            del session.inbuf[: nl + 1]
            if line.endswith(b"\r"):
                line = line[:-1]
            return None if too_long or len(line) > limit else line.strip()
        if len(session.inbuf) > limit + 1:
            too_long = True
            session.inbuf.clear()
        await session.wait_input()


async def _after(session, ex: Exchange, step: Step) -> bool:
    if step.user:
        ex.user = step.user
    if step.status == AUTH_STATUS_MORE:
        session.reply("334 " + base64.b64encode(step.data).decode("ascii"))
        session.sasl_exchange = ex
        return True
    if step.status == AUTH_STATUS_OK:
        session.st.sasl_username = step.user
        session.sasl_method = session.st.sasl_method = ex.mech
        session.reply("235 2.7.0 Authentication successful")
        return True
    return await _failed(session, ex.mech, step, ex.user)


async def _failed(session, mech: str, step: Step, user: str = "") -> bool:
    log.warning(
        "%s: SASL %s authentication failed: %s, sasl_username=%s",
        session.client_text,
        mech[:100],
        step.text,
        (step.user or user or "(unavailable)")[:100],
    )
    if step.status == AUTH_STATUS_TEMP:
        return await session.error(f"454 4.7.0 Temporary authentication failure: {step.text}", 0)
    return await session.error(f"535 5.7.8 Error: authentication failed: {step.text}", 0)


async def _bad_base64(session, mech: str, which: str) -> bool:
    text = f"Invalid base64 data in {which} response"
    log.warning(
        "%s: SASL %s authentication failed: %s, sasl_username=(unavailable)",
        session.client_text,
        mech[:100],
        text,
    )
    return await session.error(f"501 5.5.2 {text}", NOTIFY_PROTOCOL)


def log_fields(session) -> str:
    """ ", sasl_method=M, sasl_username=U, sasl_sender=S" (those known) for the client= line."""
    return "".join(f", {k}={v}" for k, v in message_attrs(session).items() if k.startswith("sasl_"))


def mail_auth_sender(session, params: dict | None = None) -> str:
    """The AUTH= parameter of MAIL FROM (params, or the accepted MAIL's), as Postfix keeps
    it: "" for <>, for none, and when AUTH is not enabled (then it is accepted and ignored)."""
    value = (session.mail_params if params is None else params).get(b"AUTH")
    if not value or value == b"<>" or session.server.sasl is None:
        return ""
    return "".join(c if c.isprintable() else "?" for c in value.decode("utf-8", "replace"))


def message_attrs(session) -> dict[str, str]:
    """The queue file attributes of the session's message: sasl_method, sasl_username
    (after AUTH), sasl_sender (MAIL FROM's AUTH=), and the Received: comment."""
    attrs = {}
    user = session.st.sasl_username
    if user:
        attrs["sasl_method"] = session.sasl_method
        attrs["sasl_username"] = user
    sender = mail_auth_sender(session)
    if sender:
        attrs["sasl_sender"] = sender
    sasl = session.server.sasl
    if user and sasl is not None and sasl.auth_header:
        shown = "".join(c if c.isprintable() and c not in "()\\" else "?" for c in user)
        attrs["received_comment"] = f"(Authenticated sender: {shown})"
    return attrs
