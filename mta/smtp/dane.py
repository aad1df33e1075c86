"""smtp.dane - DANE TLSA authentication of SMTP and LMTP servers

SYNOPSIS
    from mta.smtp.dane import dane_policy, check_peer, tlsa_matches, parse_tlsa
    policy = await dane_policy(target, nexthop, cfg, lmtp=False)
    policy.level, policy.refusal        # "may" | "encrypt" | "dane", or (dsn, reason)
    ...after the TLS handshake of a session at policy.level "dane":
    reason = check_peer(ssl_object, policy, relay)   # None, or why the mail must wait

    tlsa_matches(leaf_der, chain_der, records, names) -> bool

DESCRIPTION
    The smtp_tls_security_level (lmtp_tls_security_level) values "dane"
    and "dane-only" (RFC 7672). dane_policy() decides, per server, what
    the level means for this connection, the way Postfix does:

    - DANE needs smtp_dns_support_level = dnssec and "dns" in
      smtp_host_lookup. Without them "dane" is "may" (with a warning,
      logged once per process) and "dane-only" defers (4.7.5, "client
      TLS configuration problem"); a UNIX-domain LMTP server defers at
      both levels.
    - The server's name must come from a DNSSEC-validated MX answer (or
      from the next hop itself, [host] or LMTP inet:), else "non DNSSEC
      destination": a deferral at dane-only; at dane
      smtp_tls_dane_insecure_mx_policy says what then: "may" ignores
      the TLSA records; "encrypt" makes validated TLSA records of the
      host demand TLS without authentication; "dane" uses them as for
      a validated MX, but a match is logged as "Trusted", not
      "Verified", since the MX host name could be forged. Its empty
      default means "dane" when smtp_tls_security_level is dane, else
      "may" (Postfix writes that default as an expression).
    - The TLSA records _PORT._tcp.HOST are looked up only when the host's
      address answers were validated too (or when
      smtp_tls_force_insecure_host_tlsa_lookup = yes). Only an answer
      with the AD bit counts. A look-up that fails for now (SERVFAIL,
      timeout) defers: "TLSA lookup error for HOST:PORT".
    - No (validated) TLSA records: "may" at dane; "no TLSA records
      found" defers at dane-only.
    - Records, but none usable: "encrypt" at dane (TLS without
      authentication); "TLSA records unusable" defers at dane-only.
      Usable are certificate usages 2 (DANE-TA) and 3 (DANE-EE) with
      selector 0 (certificate) or 1 (SubjectPublicKeyInfo) and matching
      type 0 (exact) or a digest named in tls_dane_digests (sha256 = 1,
      sha512 = 2) whose data has that digest's length. Usages 0 and 1
      are never usable for SMTP (RFC 7672 section 3.1.3).
    - Usable records: level "dane": TLS is required, and after the
      handshake check_peer() matches the server's certificates against
      the records; no match ends the session with 4.7.5 "Server
      certificate not verified" (Postfix's reply text), and the mail is
      never sent to that server. A match logs "Verified TLS connection
      established to HOST[ADDR]:PORT: PROTOCOL with cipher NAME (B/B
      bits)".

    Matching (tlsa_matches()):

    - DANE-EE (3): the server's own certificate, or its public key,
      matches the record. No name, date or chain checks (RFC 7671
      section 5.1).
    - DANE-TA (2): a trust anchor matches a record, and the server's
      certificate chains up to it: each certificate from the server's
      own up to the anchor is signed by the next (the issuer's name must
      equal the subject's issuer, and the signature must verify with the
      issuer's key), each is within its validity dates, and the server's
      certificate names (DNS subjectAltNames, else the common name,
      "*." wildcards in the leftmost label) include the MX host name or
      the next-hop domain. The anchor may be any certificate the server
      sent after its own (read from the TLS connection's unverified
      chain); a record with matching type 0 carries the anchor itself
      (a whole certificate for selector 0, a bare public key for
      selector 1), so the anchor then need not be sent: the top of the
      sent chain must be signed by it.

SECURITY
    TLSA records come from DNS and certificates from the remote server:
    both are untrusted. The records are used only when the configured
    resolver vouched for them with the AD bit (it is trusted, as in
    Postfix: run a validating resolver on the loopback interface).
    Certificates are parsed by the cryptography package; the public key
    bytes are cut out of the certificate by a bounded DER walk.

STANDARDS
    RFC 6698 (TLSA), RFC 7671 (DANE updates and operational guidance),
    RFC 7672 (SMTP security via opportunistic DANE TLS), RFC 5280
    (certificates), RFC 6125 (names in certificates).

SEE ALSO
    mta/common/dns.py (DNSSEC look-ups), mta/smtp/nexthop.py (mx_secure,
    addr_secure), mta/smtp/client.py (STARTTLS), Postfix TLS_README "DANE".
"""

from __future__ import annotations

import _ssl
import hashlib
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key

from mta import log
from mta.common import dns as mta_dns
from mta.common.tls_cert import one_label_wildcard
from mta.config.params import PARAMS
from mta.smtp.nexthop import NexthopError, Target, dns_support_level, parse_nexthop

DANE_LEVELS = frozenset({"dane", "dane-only"})  # levels this module serves
DANE_USAGE_TA = 2  # DANE-TA: a trust anchor of the server's chain
DANE_USAGE_EE = 3  # DANE-EE: the server's own certificate
DANE_SELECTOR_CERT = 0  # the whole certificate (DER)
DANE_SELECTOR_SPKI = 1  # the SubjectPublicKeyInfo (DER)
DANE_MATCH_FULL = 0  # the selected bytes themselves
DANE_DIGESTS = {"sha256": 1, "sha512": 2}  # tls_dane_digests names -> matching type
DANE_DIGEST_SIZES = {"sha256": 32, "sha512": 64}  # bytes of each digest
DANE_MAX_CHAIN = 16  # certificates of a server chain looked at
DANE_REASON_CONFIG = "client TLS configuration problem"  # dane-only, administrator's fault
DANE_REASON_NOT_VERIFIED = "Server certificate not verified"  # no record matched

_warned: set[str] = set()  # configuration warnings already logged by this process


@dataclass(frozen=True)
class TlsaRecord:
    """One TLSA record: usage, selector, matching type and association data."""

    usage: int
    selector: int
    mtype: int
    data: bytes


@dataclass
class DanePolicy:
    """What dane_policy() decided for one server."""

    level: str  # "may", "encrypt" or "dane" (authenticate with records)
    records: tuple[TlsaRecord, ...] = ()  # usable records (level "dane")
    names: tuple[str, ...] = ()  # names a DANE-TA certificate must carry
    refusal: tuple[str, str] | None = None  # (dsn, reason): do not connect
    digests: dict[int, str] = field(default_factory=dict)  # matching type -> hashlib name
    trusted_only: bool = False  # the MX answer was not validated: log "Trusted"


# ---------------------------------------------------------------- records
def parse_tlsa(text: str) -> TlsaRecord | None:
    """A TLSA record from master-file text ("3 1 1 ab12 cd34"), None when malformed."""
    parts = text.split()
    if len(parts) < 4:
        return None
    try:
        usage, selector, mtype = (int(p) for p in parts[:3])
        data = bytes.fromhex("".join(parts[3:]))
    except ValueError:
        return None
    if not all(0 <= n <= 255 for n in (usage, selector, mtype)):
        return None
    return TlsaRecord(usage, selector, mtype, data)


def parse_dane_digests(text: str) -> dict[int, str]:
    """tls_dane_digests ("sha512 sha256", "sha256=1") as matching type -> digest
    name; ValueError naming the bad element."""
    out: dict[int, str] = {}
    for item in text.replace(",", " ").split():
        name, _, number = item.partition("=")
        name = name.strip().lower()
        if name not in DANE_DIGESTS:
            raise ValueError(f"unsupported tls_dane_digests element: {item}")
        if number and (not number.isdigit() or int(number) != DANE_DIGESTS[name]):
            raise ValueError(f"tls_dane_digests element {item}: wrong matching type")
        out[DANE_DIGESTS[name]] = name
    if not out:
        raise ValueError("tls_dane_digests is empty")
    return out


def usable(record: TlsaRecord, digests: dict[int, str]) -> bool:
    """True for a record this client can match (RFC 7672 section 3.1)."""
    if record.usage not in (DANE_USAGE_TA, DANE_USAGE_EE):
        return False
    if record.selector not in (DANE_SELECTOR_CERT, DANE_SELECTOR_SPKI):
        return False
    if record.mtype == DANE_MATCH_FULL:
        return bool(record.data)
    name = digests.get(record.mtype)
    return name is not None and len(record.data) == DANE_DIGEST_SIZES[name]


# ---------------------------------------------------------------- DER
def _der_item(buf: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start of contents, end of contents) of the DER item at pos."""
    if pos + 2 > len(buf):
        raise ValueError("truncated DER")
    tag, first = buf[pos], buf[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or pos + count > len(buf):
            raise ValueError("bad DER length")
        length = int.from_bytes(buf[pos : pos + count], "big")
        pos += count
    if pos + length > len(buf):
        raise ValueError("truncated DER")
    return tag, pos, pos + length


def spki_der(cert_der: bytes) -> bytes:
    """The SubjectPublicKeyInfo bytes exactly as they stand in the certificate."""
    _, start, _ = _der_item(cert_der, 0)  # Certificate SEQUENCE
    tag, pos, end = _der_item(cert_der, start)  # tbsCertificate SEQUENCE
    if tag != 0x30:
        raise ValueError("not a certificate")
    _, _, after = _der_item(cert_der, pos)
    if cert_der[pos] == 0xA0:  # [0] version
        pos = after
    for _ in range(5):  # serial, signature, issuer, validity, subject
        _, _, pos = _der_item(cert_der, pos)
    tag, _, spki_end = _der_item(cert_der, pos)
    if tag != 0x30 or spki_end > end:
        raise ValueError("not a certificate")
    return cert_der[pos:spki_end]


def selected(cert_der: bytes, selector: int) -> bytes:
    """The bytes a record with this selector describes."""
    return cert_der if selector == DANE_SELECTOR_CERT else spki_der(cert_der)


def record_matches(record: TlsaRecord, cert_der: bytes, digests: dict[int, str]) -> bool:
    """Does the certificate match the record's selector, matching type and data?"""
    try:
        data = selected(cert_der, record.selector)
    except ValueError:
        return False
    if record.mtype == DANE_MATCH_FULL:
        return data == record.data
    name = digests.get(record.mtype)
    return name is not None and hashlib.new(name, data).digest() == record.data


# ---------------------------------------------------------------- chains and names
def _signed_by(cert: x509.Certificate, key) -> bool:
    """Does key verify cert's signature?"""
    sig, tbs = cert.signature, cert.tbs_certificate_bytes
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(sig, tbs, cert.signature_algorithm_parameters, cert.signature_hash_algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(sig, tbs, cert.signature_algorithm_parameters)
        elif isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
            key.verify(sig, tbs)
        elif isinstance(key, dsa.DSAPublicKey):
            key.verify(sig, tbs, cert.signature_hash_algorithm)
        else:
            return False
    except (InvalidSignature, UnsupportedAlgorithm, TypeError, ValueError):
        return False
    return True


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    return cert.issuer == issuer.subject and _signed_by(cert, issuer.public_key())


def _current(cert: x509.Certificate, now: float) -> bool:
    return cert.not_valid_before_utc.timestamp() <= now <= cert.not_valid_after_utc.timestamp()


def cert_names(cert: x509.Certificate) -> list[str]:
    """The DNS names of a certificate: its subjectAltNames, else its common names."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = san.value.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        names = [
            str(a.value) for a in cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        ]
    return [n.rstrip(".").lower() for n in names]


def name_matches(pattern: str, name: str) -> bool:
    """RFC 6125 matching: equal, or "*.rest" for exactly one more label on the left."""
    pattern, name = pattern.lower().rstrip("."), name.lower().rstrip(".")
    if pattern == name:
        return True
    return pattern.count(".") >= 2 and one_label_wildcard(pattern, name)


def _names_ok(cert: x509.Certificate, names: Iterable[str]) -> bool:
    wanted = [n for n in names if n]
    return any(name_matches(p, n) for p in cert_names(cert) for n in wanted)


def _external_anchor(record: TlsaRecord):
    """The anchor a DANE-TA record with matching type 0 carries: a certificate or a key."""
    try:
        if record.selector == DANE_SELECTOR_CERT:
            return x509.load_der_x509_certificate(record.data)
        return load_der_public_key(record.data)
    except (ValueError, UnsupportedAlgorithm):
        return None


def tlsa_matches(
    leaf_der: bytes,
    chain_der: Sequence[bytes],
    records: Iterable[TlsaRecord],
    names: Iterable[str] = (),
    digests: dict[int, str] | None = None,
    now: float | None = None,
) -> bool:
    """Does the server (its certificate leaf_der, then the rest of the chain it
    sent, chain_der) match one of the usable records? names: the MX host name
    and the next-hop domain, for DANE-TA."""
    digests = DANE_DEFAULT_DIGESTS if digests is None else digests
    records = [r for r in records if usable(r, digests)]
    if any(r.usage == DANE_USAGE_EE and record_matches(r, leaf_der, digests) for r in records):
        return True
    ta_records = [r for r in records if r.usage == DANE_USAGE_TA]
    if not ta_records:
        return False
    try:
        path = [x509.load_der_x509_certificate(leaf_der)]
    except ValueError:
        return False
    if not _names_ok(path[0], names):
        return False
    when = time.time() if now is None else now
    sent = [d for d in chain_der[:DANE_MAX_CHAIN] if d != leaf_der]
    # walk up the chain the server sent: each step must be issued by the next
    for der in sent:
        if not _current(path[-1], when):
            return False
        try:
            cert = x509.load_der_x509_certificate(der)
        except ValueError:
            return False
        if not _issued_by(path[-1], cert):
            break  # the rest is not this chain
        if any(record_matches(r, der, digests) for r in ta_records):
            return True  # cert is the anchor; the anchor's own dates do not matter
        path.append(cert)
    # an anchor carried by the record itself signs the top of the path
    if not _current(path[-1], when):
        return False
    for r in ta_records:
        if r.mtype != DANE_MATCH_FULL:
            continue
        anchor = _external_anchor(r)
        if isinstance(anchor, x509.Certificate):
            if _issued_by(path[-1], anchor):
                return True
        elif anchor is not None and _signed_by(path[-1], anchor):
            return True
    return False


DANE_DEFAULT_DIGESTS = parse_dane_digests("sha512 sha256")  # Postfix's tls_dane_digests


# ---------------------------------------------------------------- policy
def _param(lmtp: bool, name: str) -> str:
    """lmtp_NAME when the lmtp agent has its own NAME, else smtp_NAME."""
    return f"lmtp_{name}" if lmtp and f"lmtp_{name}" in PARAMS else f"smtp_{name}"


def _warn_once(text: str) -> None:
    if text not in _warned:
        _warned.add(text)
        log.warning("%s", text)


def _incompatible(level: str, reason: str, config: bool) -> DanePolicy:
    """Postfix's rule when DANE cannot apply: "dane" becomes "may" (a warning when
    the configuration is to blame), "dane-only" defers."""
    if config:
        _warn_once(reason)
    if level == "dane":
        return DanePolicy("may")
    return DanePolicy("", refusal=("4.7.5", DANE_REASON_CONFIG if config else reason))


DANE_NEGATIVE_TTL = 10  # seconds a TLSA answer without records is remembered
_tlsa_cache: dict[str, tuple[float, mta_dns.DnsAnswer]] = {}  # name -> (until, answer)


def clear_cache() -> None:
    """Forget the remembered TLSA answers (tests)."""
    _tlsa_cache.clear()


async def _lookup_tlsa(name: str) -> mta_dns.DnsAnswer:
    """The TLSA records at name (a DNSSEC look-up), kept for their TTL in this process."""
    now = time.monotonic()
    entry = _tlsa_cache.get(name)
    if entry is not None and entry[0] > now:
        return entry[1]
    answer = await mta_dns.lookup(name, "TLSA", dnssec=True)
    if answer.status != mta_dns.DNS_RETRY:
        ttl = answer.ttl if answer.records else DANE_NEGATIVE_TTL
        _tlsa_cache[name] = (now + max(1, ttl), answer)
    return answer


def insecure_mx_policy(cfg) -> str:
    """smtp_tls_dane_insecure_mx_policy: "may", "encrypt" or "dane"; empty means
    "dane" when smtp_tls_security_level is dane, else "may" (Postfix's default)."""
    value = cfg.get("smtp_tls_dane_insecure_mx_policy").strip().lower()
    if value:
        return value
    return "dane" if cfg.get("smtp_tls_security_level").strip().lower() == "dane" else "may"


async def dane_policy(
    target: Target, nexthop: str, cfg, level: str, lmtp: bool = False
) -> DanePolicy:
    """What level ("dane" or "dane-only") means for a connection to target,
    reached as next hop nexthop."""
    dest = nexthop.strip() or target.host
    if target.unix:
        _warn_once(f'{dest}: the "{level}" security level is invalid for UNIX-domain delivery')
        return DanePolicy("", refusal=("4.7.5", DANE_REASON_CONFIG))
    lookups = [m.lower() for m in cfg.get_list("smtp_host_lookup")] or ["dns"]
    if dns_support_level(cfg, lmtp) != "dnssec" or "dns" not in lookups:
        return _incompatible(
            level, f"{dest}: {level} configured with dnssec lookups disabled", True
        )
    try:
        digests = parse_dane_digests(cfg.get("tls_dane_digests"))
    except ValueError as exc:
        return _incompatible(level, f"{dest}: {level} configured, but {exc}", True)
    mx_policy = "dane"
    if not target.mx_secure:
        mx_policy = insecure_mx_policy(cfg) if level == "dane" else "may"
        if mx_policy == "may":
            return _incompatible(level, "non DNSSEC destination", False)
    force = cfg.get_bool(_param(lmtp, "tls_force_insecure_host_tlsa_lookup"))
    if not target.addr_secure and not force:
        return _incompatible(level, "no TLSA records found", False)
    answer = await _lookup_tlsa(f"_{target.port}._tcp.{target.host}")
    if answer.status == mta_dns.DNS_RETRY:
        reason = f"TLSA lookup error for {target.host}:{target.port}"
        return DanePolicy("", refusal=("4.7.5", reason))
    if answer.status != mta_dns.DNS_OK or not answer.secure:
        return _incompatible(level, "no TLSA records found", False)
    parsed = [parse_tlsa(text) for text in answer.records]
    records = tuple(r for r in parsed if r is not None and usable(r, digests))
    if not records or mx_policy == "encrypt":
        if level == "dane":
            return DanePolicy("encrypt")
        return DanePolicy("", refusal=("4.7.5", "TLSA records unusable"))
    names = [target.host]
    try:
        hop = parse_nexthop(dest, target.port, lmtp)
    except NexthopError:
        hop = None  # it parsed before it was resolved: cannot happen
    if hop is not None and hop.use_mx and hop.host not in names:
        names.append(hop.host)  # the next-hop domain, whose MX answer was validated
    return DanePolicy(
        "dane", records, tuple(names), digests=digests, trusted_only=not target.mx_secure
    )


# ---------------------------------------------------------------- after the handshake
def peer_chain(ssl_object) -> tuple[bytes, list[bytes]]:
    """(leaf, rest of the chain) the server sent, as DER; the chain is empty when
    the TLS library cannot tell."""
    leaf = ssl_object.getpeercert(binary_form=True) or b""
    chain: list[bytes] = []
    getter = getattr(ssl_object, "get_unverified_chain", None)
    if getter is None:  # Python < 3.13: the private twin of the same call
        getter = getattr(getattr(ssl_object, "_sslobj", None), "get_unverified_chain", None)
    if getter is not None:
        try:
            for cert in getter() or []:
                der = cert if isinstance(cert, bytes) else cert.public_bytes(_ssl.ENCODING_DER)
                chain.append(der)
        except (AttributeError, ValueError, TypeError, OSError):
            chain = []
    return leaf, [d for d in chain if d != leaf]


def check_peer(ssl_object, policy: DanePolicy, relay: str) -> str | None:
    """After the TLS handshake at level "dane": None when the server's
    certificates match the records (the connection is logged as Verified, or as
    Trusted when the MX answer was not validated),
    else the reason to defer (4.7.5)."""
    leaf, chain = peer_chain(ssl_object) if ssl_object is not None else (b"", [])
    if not leaf or not tlsa_matches(leaf, chain, policy.records, policy.names, policy.digests):
        return DANE_REASON_NOT_VERIFIED
    cipher = ssl_object.cipher() or ("", "", 0)
    log.info(
        "%s TLS connection established to %s: %s with cipher %s (%d/%d bits)",
        "Trusted" if policy.trusted_only else "Verified",
        relay,
        ssl_object.version(),
        cipher[0],
        cipher[2],
        cipher[2],
    )
    return None
