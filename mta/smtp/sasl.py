"""smtp.sasl - SMTP AUTH in the smtp and lmtp clients (PLAIN, LOGIN)

SYNOPSIS
    from mta.smtp.sasl import SaslSettings, login
    sasl = SaslSettings.of(cfg, lmtp=False)
    problem = sasl.config_error()             # None, or a reason to defer with
    await login(session, sasl, dest, sender)  # after the last EHLO; SessionError on failure

DESCRIPTION
    With smtp_sasl_auth_enable (lmtp_sasl_auth_enable) set and a server
    whose EHLO reply offers AUTH, login() looks up the credentials in
    smtp_sasl_password_maps as Postfix does: first by the remote host
    name, then by the next-hop destination as it was given (for
    example "[mail.isp.example]:587"); the value is "username:password".
    With smtp_sender_dependent_authentication the envelope sender comes
    first: the address as it is, without its extension (after
    recipient_delimiter), then "@domain"; the null sender has no
    entry of its own. Without an entry the session goes on without
    AUTH.

    The mechanisms offered (the "AUTH" and the old "AUTH=" keyword) are
    narrowed by smtp_sasl_mechanism_filter (when set; a filter that
    leaves nothing means no AUTH, with a warning) and by the security
    options: smtp_sasl_tls_verified_security_options on a TLS session
    whose server certificate was verified (the levels fingerprint,
    verify, secure and a DANE match), smtp_sasl_tls_security_options on
    another TLS session, smtp_sasl_security_options otherwise. PLAIN and LOGIN send the
    password itself, so noplaintext, noactive, nodictionary and
    mutual_auth rule both out, and Postfix's default ("noplaintext,
    noanonymous", also over TLS) allows neither: an operator sets
    "noanonymous" as Postfix's SASL_README says.

    smtp_sasl_type names the client implementation; Postfix's only one
    is "cyrus", which is this built-in client (PLAIN and LOGIN). Any
    other value is a configuration error (mta check; the mail waits). When the server offers
    AUTH, there are credentials and no usable mechanism is left, the
    mail is deferred (4.7.0 "... no mechanism available"), never sent
    with a password the options forbid.

    A server that refuses the credentials defers the mail with its
    reply ("SASL authentication failed; server HOST[ADDR] said: 535
    ..."); with smtp_sasl_auth_soft_bounce = no a 5xx reply bounces it.
    With smtp_sasl_auth_cache_name a login the server refused with 535
    is not tried again with the same credentials until
    smtp_sasl_auth_cache_time has passed: the mail gets the saved reply
    (mta/smtp/sasl_cache.py).

    An authenticated session is marked (session.authenticated) and is
    never put into a session cache, so it cannot serve mail that is
    not entitled to its credentials; with sender-dependent
    authentication no session is cached at all (as in Postfix), so
    that a session opened without AUTH for one sender never carries
    the mail of a sender that has credentials.

SECURITY
    The password goes out only base64-encoded inside the AUTH exchange;
    it is never logged and never copied into a reason text.

STANDARDS
    RFC 4954 (SMTP AUTH), RFC 4616 (PLAIN), the LOGIN mechanism
    (draft-murchison-sasl-login).
"""

from __future__ import annotations

import base64
import re
import time
from dataclasses import dataclass

from mta import log
from mta.common.addr_find import find_address
from mta.common.kv_store import LMDB_KINDS
from mta.config.params import PARAMS
from mta.maps import MapError, MapRetry, Maps
from mta.smtp.sasl_cache import AuthCache

MECH_PREFERENCE = ("PLAIN", "LOGIN")  # the mechanisms this client speaks, best first
SECURITY_OPTIONS = frozenset(
    {"noplaintext", "noactive", "nodictionary", "noanonymous", "mutual_auth"}
)
NO_PASSWORD_MECHS = frozenset({"noplaintext", "noactive", "nodictionary", "mutual_auth"})
SASL_CLIENT_TYPE = "cyrus"  # Postfix's only client type; here the built-in client
_ENHANCED_RE = re.compile(r"^\d{3}[ -]([245]\.\d{1,3}\.\d{1,3})\b")


class AuthFailed(Exception):
    """login() could not authenticate: (dsn, reason, reply)."""

    def __init__(self, dsn: str, reason: str, reply: str = "") -> None:
        super().__init__(reason)
        self.dsn = dsn
        self.reason = reason
        self.reply = reply


def _param(lmtp: bool, name: str) -> str:
    alt = f"lmtp_{name}"
    return alt if lmtp and alt in PARAMS else f"smtp_{name}"


@dataclass
class SaslSettings:
    """The smtp_sasl_* (or lmtp_sasl_*) parameters, read once per configuration."""

    lmtp: bool
    enabled: bool
    maps: Maps | None
    map_error: str  # why the password tables could not be opened, or ""
    mech_filter: frozenset[str]
    options: frozenset[str]
    tls_options: frozenset[str]
    soft_bounce: bool
    verified_options: frozenset[str] = frozenset()  # over TLS with a verified certificate
    sasl_type: str = "cyrus"  # the only client type (the built-in client)
    sender_dependent: bool = False  # smtp_sender_dependent_authentication
    delimiter: str = ""  # recipient_delimiter, for the sender's extension
    cache: AuthCache | None = None  # smtp_sasl_auth_cache_name (mta/smtp/sasl_cache.py)

    _memo = {}  # (id(cfg), lmtp) -> (cfg, SaslSettings)

    @classmethod
    def of(cls, cfg, lmtp: bool = False) -> SaslSettings:
        memo = cls._memo.get((id(cfg), lmtp))
        if memo is not None and memo[0] is cfg:
            return memo[1]
        enabled = cfg.get_bool(_param(lmtp, "sasl_auth_enable"))
        maps, map_error = None, ""
        if enabled:
            try:
                maps = Maps.from_param(cfg, _param(lmtp, "sasl_password_maps"))
            except MapError as exc:  # an unreadable table: the mail waits for a fix
                map_error = str(exc)
        st = cls(
            lmtp=lmtp,
            enabled=enabled,
            maps=maps,
            map_error=map_error,
            mech_filter=frozenset(
                m.upper() for m in cfg.get_list(_param(lmtp, "sasl_mechanism_filter"))
            ),
            options=frozenset(
                o.lower() for o in cfg.get_list(_param(lmtp, "sasl_security_options"))
            ),
            tls_options=frozenset(
                o.lower() for o in cfg.get_list(_param(lmtp, "sasl_tls_security_options"))
            ),
            soft_bounce=cfg.get_bool(_param(lmtp, "sasl_auth_soft_bounce")),
            verified_options=frozenset(
                o.lower() for o in cfg.get_list(_param(lmtp, "sasl_tls_verified_security_options"))
            ),
            sasl_type=cfg.get(_param(lmtp, "sasl_type")).strip().lower(),
            sender_dependent=cfg.get_bool(_param(lmtp, "sender_dependent_authentication")),
            delimiter=cfg.get("recipient_delimiter"),
            cache=AuthCache.of(cfg, lmtp) if enabled else None,
        )
        cls._memo[(id(cfg), lmtp)] = (cfg, st)
        return st

    def config_error(self) -> str | None:
        """A reason to defer with when the settings cannot be served, else None."""
        if not self.enabled:
            return None
        if self.map_error:
            return f"{_param(self.lmtp, 'sasl_password_maps')}: {self.map_error}"
        if self.sasl_type != SASL_CLIENT_TYPE:
            return (
                f"mail system configuration error: unsupported {_param(self.lmtp, 'sasl_type')} "
                f"value: {self.sasl_type} (the built-in client is {SASL_CLIENT_TYPE})"
            )
        for name, opts in (
            ("sasl_security_options", self.options),
            ("sasl_tls_security_options", self.tls_options),
            ("sasl_tls_verified_security_options", self.verified_options),
        ):
            bad = sorted(opts - SECURITY_OPTIONS)
            if bad:
                return (
                    f"mail system configuration error: unknown {_param(self.lmtp, name)} "
                    f"value: {bad[0]}"
                )
        tables = sorted(m for m in self.mech_filter if ":" in m)
        if tables:
            return (
                f"mail system configuration error: {_param(self.lmtp, 'sasl_mechanism_filter')}: "
                f"lookup tables are not implemented: {tables[0].lower()}"
            )
        return None

    @property
    def per_sender(self) -> bool:
        """Credentials may depend on the envelope sender: sessions must not be shared."""
        return self.enabled and self.sender_dependent

    def credentials(self, host: str, dest: str, sender: str = "") -> tuple[str, str] | None:
        """(user, password) for the server host reached as next hop dest (for
        mail from sender, with sender-dependent authentication), or None.

        MapRetry passes to the caller."""
        if not self.maps:
            return None
        value = None
        if self.sender_dependent and sender:
            value = find_address(self.maps, sender, self.delimiter, local=False)
        for key in (host, dest):
            if value is not None:
                break
            if key:
                value = self.maps.lookup(key)
        if value is None:
            return None
        user, _, password = value.partition(":")
        return user, password

    def usable(self, offered: list[str], tls: bool, verified: bool = False) -> list[str]:
        """The offered mechanisms this client may use on this session, best first."""
        if tls and verified:
            options = self.verified_options
        else:
            options = self.tls_options if tls else self.options
        if options & NO_PASSWORD_MECHS:
            return []  # PLAIN and LOGIN are all there is, and both send the password
        return [m for m in MECH_PREFERENCE if m in offered]


def client_setup_problems(cfg) -> list[tuple[str, str, bool]]:
    """What mta check says about the smtp and lmtp clients' SASL settings:
    [(param, message, fatal)]: an unknown security option is fatal (the
    client would defer all mail), an unusable auth cache a warning."""
    out: list[tuple[str, str, bool]] = []
    for lmtp in (False, True):
        for name in (
            "sasl_security_options",
            "sasl_tls_security_options",
            "sasl_tls_verified_security_options",
        ):
            param = _param(lmtp, name)
            if "$" in cfg.raw(param):
                continue  # from another of them ($smtp_sasl_security_options): said there
            bad = [o for o in cfg.get_list(param) if o.lower() not in SECURITY_OPTIONS]
            if bad:
                expected = " or ".join(sorted(SECURITY_OPTIONS))
                out.append((param, f'unknown value "{bad[0]}" (expected {expected})', True))
        param = _param(lmtp, "sasl_auth_cache_name")
        spec = cfg.get(param).strip()
        kind, _, path = spec.partition(":")
        if spec and (kind.lower() not in LMDB_KINDS or not path):
            why = f'unsupported table "{spec}": use lmdb:PATH; the cache is not used'
            out.append((param, why, False))
    return out


def offered_mechanisms(features: dict[str, str]) -> list[str]:
    """The mechanisms in the EHLO reply's AUTH (and AUTH=) keywords, upper case."""
    found: list[str] = []
    for key, rest in features.items():
        if key == "AUTH":
            words = rest.split()
        elif key.startswith("AUTH="):
            words = [key[5:], *rest.split()]
        else:
            continue
        found += [w.upper() for w in words if w.upper() not in found]
    return found


def _b64(text: str) -> bytes:
    return base64.b64encode(text.encode("utf-8"))


async def login(session, sasl: SaslSettings, dest: str, sender: str = "") -> None:
    """Authenticate session when the server offers AUTH and there are credentials.

    SessionError (from the session, or made here) when authentication
    fails; nothing when the session simply goes on without AUTH."""
    from mta.smtp.client import SaslFailed  # client imports this module

    offered = offered_mechanisms(session.features)
    if not sasl.enabled or not offered:
        return
    if sasl.mech_filter:
        kept = [m for m in offered if m in sasl.mech_filter]
        if not kept:
            log.warning(
                "%s offered no supported AUTH mechanisms: '%s'",
                session.hostaddr,
                " ".join(offered),
            )
            return
        offered = kept
    try:
        creds = sasl.credentials(session.target.host, dest, sender)
    except (MapRetry, MapError) as exc:
        raise SaslFailed(
            "4.3.0", f"{_param(sasl.lmtp, 'sasl_password_maps')} lookup error: {exc}"
        ) from None
    if creds is None:
        return
    mechs = sasl.usable(offered, session.tls, session.tls_verified)
    if not mechs:
        raise SaslFailed(
            "4.7.0",
            f"SASL authentication failed; cannot authenticate to server "
            f"{session.hostaddr}: no mechanism available",
        )
    user, password = creds
    host = session.target.host
    saved = sasl.cache.refused(host, user, password, time.time()) if sasl.cache else None
    try:
        if saved is not None:  # refused before: not tried again (smtp_sasl_auth_cache_name)
            found = _ENHANCED_RE.match(saved)
            said = f"SASL authentication failed; server {session.hostaddr} said: {saved}"
            raise AuthFailed(found.group(1) if found else "5.7.8", said, saved)
        await _exchange(session, mechs[0], user, password)
    except AuthFailed as exc:
        if sasl.cache is not None and saved is None and exc.reply.startswith("535"):
            sasl.cache.remember(host, user, password, exc.reply, time.time())
        dsn = exc.dsn
        if dsn.startswith("5") and sasl.soft_bounce:
            dsn = "4" + dsn[1:]
        raise SaslFailed(dsn, exc.reason, reply=exc.reply, mta=host) from None
    if sasl.cache is not None:
        sasl.cache.forget(host)
    session.authenticated = True


async def _exchange(session, mech: str, user: str, password: str) -> None:
    """Run AUTH mech; AuthFailed unless the server ends it with a 2xx reply (235)."""
    timeout = session.st.helo_timeout
    stage = "performing the AUTH exchange"
    if mech == "PLAIN":
        steps = [
            b"AUTH PLAIN " + base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode())
        ]
    else:  # LOGIN: the user name, then the password, each after a 334 challenge
        steps = [b"AUTH LOGIN", _b64(user), _b64(password)]
    for i, line in enumerate(steps):
        session.write(line + b"\r\n")
        reply = await session.read_reply(timeout, stage)
        if reply.klass == 2:  # 235, or any 2xx as Postfix takes it
            return
        last = i == len(steps) - 1
        if reply.code == 334 and not last:
            continue
        if reply.code == 334:  # the server wants more than this mechanism has
            session.write(b"*\r\n")
            reply = await session.read_reply(timeout, stage)
        said = f"SASL authentication failed; server {session.hostaddr} said: {reply.text}"
        if reply.klass in (4, 5):
            raise AuthFailed(reply.dsn, said, reply.text)
        raise AuthFailed("4.7.0", said, reply.text)
    raise AuthFailed("4.7.0", f"SASL authentication failed with server {session.hostaddr}")
