"""smtp.mta_sts - MTA-STS policies (RFC 8461) for the smtp client

SYNOPSIS
    from mta.smtp.mta_sts import StsResolver, delivery_policy, enforce, screen_targets
    resolver = StsResolver.of(cfg)            # None when smtp_tls_mta_sts_enable = no
    policy = await resolver.policy("example.com")

    # the smtp client, per next hop
    policy = await delivery_policy(cfg, st, nexthop, lmtp)   # None: no policy applies
    st = enforce(st, policy)                  # mode enforce: level verify, system CAs
    targets = screen_targets(targets, policy, nexthop, queue_id)   # the MX hosts it allows

DESCRIPTION
    A domain publishes a policy with two things: a TXT record at
    _mta-sts.DOMAIN ("v=STSv1; id=..."), and the policy itself at
    https://mta-sts.DOMAIN/.well-known/mta-sts.txt, a text file of
    "key: value" lines:

        version: STSv1
        mode: enforce            (or testing, or none)
        mx: mail.example.com     (one line per pattern; "*.example.net"
        mx: *.example.net         matches one leftmost label)
        max_age: 604800          (seconds, at most 31557600)

    policy() finds the policy of a domain as RFC 8461 section 5.1 asks.
    A valid TXT record whose id is that of the cached, unexpired policy
    means the cached policy; a new id means fetching the policy again.
    When the fetch fails, or there is no TXT record, a cached policy is
    used until its max_age runs out. None means the domain has no
    policy in force.

    The fetch is HTTPS to port 443 of the addresses of mta-sts.DOMAIN,
    looked up with the same resolver as MX records. The server's
    certificate must verify (the system's trusted authorities plus
    smtp_tls_CAfile and smtp_tls_CApath when set) for that name. Only
    "200" with Content-Type text/plain counts; a redirect is a failure.
    The answer is read for at most smtp_tls_mta_sts_fetch_timeout and
    MTA_STS_MAX_BODY bytes.

    The smtp client asks for a policy before each delivery, so the TXT
    answer is kept in the process for its TTL (between TXT_TTL_MIN and
    TXT_TTL_MAX; "no record" for TXT_NEGATIVE_TTL, a failed look-up for
    TXT_RETRY_TTL), and a fetch that failed is not tried again for the
    same id before FETCH_RETRY_MIN seconds, doubled after each further
    failure up to FETCH_RETRY_MAX: a domain whose policy host is down
    costs one HTTPS attempt (and one warning) per interval and process,
    not one per message.

    Policies are kept in smtp_tls_mta_sts_cache_database (an lmdb:
    table shared by the smtp processes; empty: in the memory of each
    process) as JSON under the domain name, so that they survive
    restarts as RFC 8461 requires.

    What the smtp client does with a policy (delivery_policy(), for
    a next hop that is a bare domain, the MX case, when
    smtp_tls_mta_sts_enable is on): mode enforce delivers only to MX
    hosts that match one of the patterns (screen_targets(); none left:
    deferred, 4.7.5), with TLS level verify, match hostname, and the
    system's trusted authorities added to smtp_tls_CAfile/CApath
    (enforce()): a server that offers no STARTTLS or a certificate
    that does not verify for its MX name gets no mail. Mode testing
    changes nothing and logs each MX host the policy does not name.
    A policy never weakens what is configured: it is not applied where
    smtp_tls_policy_maps has an entry for the next hop, nor at the
    levels dane, dane-only, fingerprint, verify and secure; it is
    applied at none, may and encrypt. LMTP never uses MTA-STS.

SECURITY
    The TXT record, the policy text and the HTTP answer come from the
    network. They are parsed with bounded sizes; anything malformed is
    no policy (never a weaker one than a cached valid policy). Runs
    inside the unprivileged smtp process.

STANDARDS
    RFC 8461 (SMTP MTA Strict Transport Security), RFC 6125 section 6.4.3
    (wildcard names).

SEE ALSO
    mta/smtp/client.py, mta/common/kv_store.py
"""

from __future__ import annotations

import asyncio
import json
import re
import ssl
import time
from dataclasses import dataclass, replace

from mta import log
from mta.common import dns as mta_dns
from mta.common.kv_store import LmdbStore, MemoryStore, StoreError, open_store
from mta.common.tls_cert import one_label_wildcard

MTA_STS_PORT = 443  # the policy host's HTTPS port
MTA_STS_PATH = "/.well-known/mta-sts.txt"
MTA_STS_MAX_BODY = 64 * 1024  # bytes of a policy file that are read (RFC 8461 suggests 64 KB)
MTA_STS_MAX_HEAD = 16 * 1024  # bytes of HTTP status line and headers
MTA_STS_MAX_AGE = 31557600  # seconds: the largest max_age a policy may have
MTA_STS_MODES = ("enforce", "testing", "none")
TXT_TTL_MIN = 60  # seconds a TXT answer is kept at least (a TTL of 0 would mean a query per mail)
TXT_TTL_MAX = 3600  # seconds a TXT answer is kept at most
TXT_NEGATIVE_TTL = 300  # seconds "no record" is kept (a new record is seen this late at most)
TXT_RETRY_TTL = 60  # seconds a failed TXT look-up is kept before the next try
FETCH_RETRY_MIN = 60  # seconds before a failed policy fetch is tried again, doubled per failure
FETCH_RETRY_MAX = 3600  # seconds: the longest wait between fetch tries
TXT_MEMO_LIMIT = 100_000  # domains whose TXT answer a process keeps
_ID_RE = re.compile(r"^[A-Za-z0-9]{1,32}$")
_FIELD_RE = re.compile(r"^([A-Za-z0-9_.-]+)\s*:\s*(.*?)\s*$")


class StsError(Exception):
    """A policy could not be found, fetched or parsed; str() says why."""


@dataclass(frozen=True)
class StsPolicy:
    """One domain's policy, as fetched."""

    mode: str
    mx: tuple[str, ...]
    max_age: int
    id: str = ""
    fetched: float = 0.0

    @property
    def enforced(self) -> bool:
        return self.mode == "enforce"

    def expired(self, now: float) -> bool:
        return now >= self.fetched + self.max_age

    def mx_allowed(self, host: str) -> bool:
        """Does the MX host name match one of the policy's patterns?"""
        return any(mx_matches(pattern, host) for pattern in self.mx)

    def encode(self) -> str:
        return json.dumps(
            {
                "mode": self.mode,
                "mx": list(self.mx),
                "max_age": self.max_age,
                "id": self.id,
                "fetched": self.fetched,
            }
        )

    @classmethod
    def decode(cls, text: str) -> StsPolicy | None:
        """The stored policy, or None when text is not one."""
        try:
            data = json.loads(text)
            policy = cls(
                str(data["mode"]),
                tuple(str(p) for p in data["mx"]),
                int(data["max_age"]),
                str(data["id"]),
                float(data["fetched"]),
            )
        except (ValueError, KeyError, TypeError):
            return None
        return policy if policy.mode in MTA_STS_MODES else None


def mx_matches(pattern: str, host: str) -> bool:
    """RFC 8461 section 4.1: "*.example.com" matches exactly one label more."""
    pattern = pattern.strip().rstrip(".").lower()
    host = host.strip().rstrip(".").lower()
    if not pattern or not host:
        return False
    if pattern.startswith("*."):
        return one_label_wildcard(pattern, host)
    return host == pattern


def parse_txt(records: list[str]) -> str | None:
    """The id of the one valid "v=STSv1" TXT record, or None (none, several, or malformed)."""
    found: list[str] = []
    for record in records:
        fields = record.split(";")
        if fields[0].rstrip(" \t") != "v=STSv1":  # the version comes first, nothing before it
            continue
        ident = None
        for field in fields[1:]:
            key, eq, value = field.partition("=")
            if eq and key.strip() == "id":
                ident = value.strip()
        found.append(ident if ident and _ID_RE.match(ident) else "")
    if len(found) != 1 or not found[0]:
        return None
    return found[0]


def parse_policy(text: str, ident: str = "", now: float = 0.0) -> StsPolicy:
    """The policy in a policy file; StsError says what is wrong with it."""
    fields: dict[str, str] = {}
    mx: list[str] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        m = _FIELD_RE.match(line)
        if m is None:
            raise StsError(f"malformed policy line: {line[:80]!r}")
        key, value = m.group(1).lower(), m.group(2)
        if key == "mx":
            mx.append(value)
        else:
            fields.setdefault(key, value)
    if fields.get("version") != "STSv1":
        raise StsError("the policy is not version STSv1")
    mode = fields.get("mode", "")
    if mode not in MTA_STS_MODES:
        raise StsError(f"unknown policy mode {mode[:40]!r}")
    try:
        max_age = int(fields.get("max_age", ""))
    except ValueError:
        raise StsError("the policy has no valid max_age") from None
    if not 0 <= max_age <= MTA_STS_MAX_AGE:
        raise StsError(f"max_age {max_age} is out of range")
    if mode != "none" and not mx:
        raise StsError("the policy names no mx pattern")
    return StsPolicy(mode, tuple(p.lower() for p in mx), max_age, ident, now)


def _content_type_ok(value: str) -> bool:
    return value.split(";", 1)[0].strip().lower() == "text/plain"


def parse_http(head: bytes) -> tuple[int, dict[str, str]]:
    """The status code and the headers (names in lower case) of an HTTP answer head."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise StsError(f"malformed HTTP status line: {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if colon:
            headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers


async def _read_answer(reader: asyncio.StreamReader) -> bytes:
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = await reader.read(4096)
        if not chunk:
            raise StsError("the policy server closed the connection early")
        head += chunk
        if len(head) > MTA_STS_MAX_HEAD + MTA_STS_MAX_BODY:
            break
    head, _, body = head.partition(b"\r\n\r\n")
    if len(head) > MTA_STS_MAX_HEAD:
        raise StsError("the HTTP answer head is too long")
    status, headers = parse_http(head)
    if status != 200:
        raise StsError(f"the policy server answered HTTP {status}")
    if not _content_type_ok(headers.get("content-type", "")):
        raise StsError(
            f"the policy has Content-Type {headers.get('content-type', '(none)')[:60]!r}, not text/plain"
        )
    while len(body) <= MTA_STS_MAX_BODY:
        chunk = await reader.read(4096)
        if not chunk:
            break
        body += chunk
    if len(body) > MTA_STS_MAX_BODY:
        raise StsError(f"the policy is longer than {MTA_STS_MAX_BODY} bytes")
    length = headers.get("content-length")
    if length is not None and length.isdigit():
        body = body[: int(length)]
    return body


def tls_context(cfg) -> ssl.SSLContext:
    """Verify the policy host as any HTTPS client does, plus the operator's own authorities."""
    ctx = ssl.create_default_context()
    cafile = cfg.get("smtp_tls_CAfile").strip() or None
    capath = cfg.get("smtp_tls_CApath").strip() or None
    if cafile or capath:
        ctx.load_verify_locations(cafile=cafile, capath=capath)
    return ctx


async def fetch_policy_text(domain: str, ctx: ssl.SSLContext, timeout: float) -> str:
    """The policy file of domain over HTTPS; StsError says why not."""
    host = f"mta-sts.{domain}"
    addrs = await mta_dns.host_addresses(host)
    if addrs.status != mta_dns.DNS_OK:
        raise StsError(f"no address for {host} ({addrs.status})")
    request = (
        f"GET {MTA_STS_PATH} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: mta\r\nConnection: close\r\n\r\n"
    ).encode("ascii")
    last = ""
    for addr in addrs.records:
        writer = None
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(addr, MTA_STS_PORT, ssl=ctx, server_hostname=host), timeout
            )
            writer.write(request)
            body = await asyncio.wait_for(_read_answer(reader), timeout)
            return body.decode("utf-8", "replace")
        except ssl.SSLCertVerificationError as exc:
            last = f"{host}[{addr}]: certificate not trusted: {exc.verify_message}"
        except (OSError, asyncio.TimeoutError, ssl.SSLError) as exc:
            last = f"{host}[{addr}]: {exc.strerror if isinstance(exc, OSError) and exc.strerror else exc or 'timeout'}"
        except StsError as exc:
            last = f"{host}[{addr}]: {exc}"
        finally:
            if writer is not None:
                writer.close()
    raise StsError(last or f"no address for {host}")


def open_cache(cfg) -> MemoryStore | LmdbStore:
    """The table smtp_tls_mta_sts_cache_database names; StoreError names what is wrong."""
    return open_store(cfg, "smtp_tls_mta_sts_cache_database")


class StsResolver:
    """Finds, fetches and caches the MTA-STS policies of destination domains."""

    def __init__(self, store, ctx: ssl.SSLContext, timeout: float, clock=time.time) -> None:
        self.store = store
        self.ctx = ctx
        self.timeout = timeout
        self.clock = clock
        self._txt: dict[str, tuple[float, str | None]] = {}  # domain -> (until, id or None)
        self._failed: dict[
            tuple[str, str], tuple[float, float]
        ] = {}  # (domain, id) -> (retry at, wait)

    @classmethod
    def of(cls, cfg) -> StsResolver | None:
        """The resolver smtp_tls_mta_sts_enable asks for, or None."""
        if not cfg.get_bool("smtp_tls_mta_sts_enable"):
            return None
        try:
            store = open_cache(cfg)
        except StoreError as exc:
            log.warning(f"{exc}: MTA-STS policies are kept in memory only")
            store = MemoryStore()
        return cls(store, tls_context(cfg), float(cfg.get_time("smtp_tls_mta_sts_fetch_timeout")))

    def _cached(self, domain: str) -> StsPolicy | None:
        try:
            raw = self.store.get(domain)
        except StoreError as exc:
            log.warning(f"MTA-STS cache: {exc}")
            return None
        return None if raw is None else StsPolicy.decode(raw)

    def _store(self, domain: str, policy: StsPolicy) -> None:
        try:
            self.store.put(domain, policy.encode())
        except StoreError as exc:
            log.warning(f"MTA-STS cache: {exc}")

    async def policy(self, domain: str) -> StsPolicy | None:
        """The policy in force for domain, or None (no policy, or mode none)."""
        domain = domain.strip().rstrip(".").lower()
        if not domain or domain.startswith("["):
            return None
        now = self.clock()
        cached = self._cached(domain)
        if cached is not None and cached.expired(now):
            cached = None
        ident = await self._record_id(domain, now)
        if ident is None or (cached is not None and cached.id == ident):
            return _in_force(cached)
        failed = self._failed.get((domain, ident))
        if failed is not None and now < failed[0]:
            return _in_force(cached)  # the last fetch failed a moment ago
        try:
            text = await fetch_policy_text(domain, self.ctx, self.timeout)
            policy = parse_policy(text, ident, now)
        except StsError as exc:
            wait = FETCH_RETRY_MIN if failed is None else min(failed[1] * 2, FETCH_RETRY_MAX)
            if len(self._failed) >= TXT_MEMO_LIMIT:
                self._failed.clear()
            self._failed[(domain, ident)] = (now + wait, wait)
            log.warning(
                f"MTA-STS policy for {domain}: {exc}"
                + ("; using the cached policy" if cached else "")
                + f"; next try in {int(wait)}s"
            )
            return _in_force(cached)
        self._failed.pop((domain, ident), None)
        self._store(domain, policy)
        log.info(
            f"MTA-STS policy for {domain}: id={ident}, mode={policy.mode}, max_age={policy.max_age}"
        )
        return _in_force(policy)

    async def _record_id(self, domain: str, now: float) -> str | None:
        """The id of domain's _mta-sts TXT record (None: no valid record), kept for its TTL."""
        kept = self._txt.get(domain)
        if kept is not None and now < kept[0]:
            return kept[1]
        txt = await mta_dns.lookup_txt(f"_mta-sts.{domain}")
        if txt.status == mta_dns.DNS_OK:
            ident = parse_txt(txt.records)
            keep = min(max(txt.ttl, TXT_TTL_MIN), TXT_TTL_MAX)
        else:
            ident = None
            keep = TXT_RETRY_TTL if txt.status == mta_dns.DNS_RETRY else TXT_NEGATIVE_TTL
        if len(self._txt) >= TXT_MEMO_LIMIT:
            self._txt.clear()  # a bulk sender reaches many domains: start over rather than grow
        self._txt[domain] = (now + keep, ident)
        return ident


def _in_force(policy: StsPolicy | None) -> StsPolicy | None:
    return None if policy is None or policy.mode == "none" else policy


# ------------------------------------------------------------ the smtp client's use
STS_APPLIED_LEVELS = frozenset({"", "none", "may", "encrypt"})  # levels a policy may raise
_resolvers: dict[int, tuple[object, StsResolver | None]] = {}  # id(cfg) -> (cfg, resolver)


def _resolver_for(cfg) -> StsResolver | None:
    kept = _resolvers.get(id(cfg))
    if kept is not None and kept[0] is cfg:
        return kept[1]
    resolver = StsResolver.of(cfg)
    _resolvers.clear()  # one configuration at a time per process
    _resolvers[id(cfg)] = (cfg, resolver)
    return resolver


def policy_domain(nexthop: str) -> str | None:
    """The domain whose MTA-STS policy governs nexthop, or None (a [host] or a port)."""
    hop = nexthop.strip().lower()
    if not hop or hop.startswith("[") or ":" in hop:
        return None
    return hop.rstrip(".")


async def delivery_policy(cfg, st, nexthop: str, lmtp: bool) -> StsPolicy | None:
    """The MTA-STS policy that applies to a delivery to nexthop under settings st."""
    if lmtp:
        return None
    resolver = _resolver_for(cfg)
    domain = policy_domain(nexthop)
    if resolver is None or domain is None or st.tls_level not in STS_APPLIED_LEVELS:
        return None
    if st.tls_policy != st.tls.default_policy():
        return None  # smtp_tls_policy_maps names this next hop: the operator decided
    return await resolver.policy(domain)


def enforce(st, policy: StsPolicy | None):
    """st raised to what an enforced policy demands (the same st otherwise)."""
    if policy is None or not policy.enforced:
        return st
    tls_policy = replace(st.tls.make_policy("verify", {"match": ["hostname"]}), system_cas=True)
    return replace(st, tls_level="verify", tls_policy=tls_policy)


def screen_targets(targets, policy: StsPolicy | None, nexthop: str, queue_id: str):
    """The targets the policy allows (all of them in testing mode, with a log line
    for each one it does not name); StsError when enforce leaves none."""
    if policy is None or targets is None:
        return targets
    refused = [t for t in targets if not policy.mx_allowed(t.host)]
    if not refused:
        return targets
    for t in refused:
        log.info(
            "%s: MTA-STS policy for %s (mode %s): MX host %s is not in the policy%s",
            queue_id,
            nexthop,
            policy.mode,
            t.host,
            ", skipped" if policy.enforced else "",
        )
    if not policy.enforced:
        return targets
    kept = [t for t in targets if policy.mx_allowed(t.host)]
    if not kept:
        raise StsError(f"MTA-STS policy for {nexthop}: no MX host matches the policy")
    screened = type(targets)(kept)  # a nexthop.Targets keeps what it says of the next hop
    screened.__dict__.update(getattr(targets, "__dict__", {}))
    return screened
