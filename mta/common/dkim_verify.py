"""common.dkim_verify - check the DKIM signatures of a message (RFC 6376 section 6)

SYNOPSIS
    from mta.common.dkim_verify import verify_message
    results = verify_message(message_bytes, txt_lookup)
    # txt_lookup(name) -> ("ok", ["v=DKIM1; k=rsa; p=..."]) or ("notfound"|"retry", [])
    results[0].result, results[0].domain, results[0].reason   # "pass", "example.org", ""

DESCRIPTION
    Every DKIM-Signature field of the message is checked on its own:
    its tags, the body hash (with l= honoured when a signer used it),
    then the signature over the signed header fields with the public
    key from SELECTOR._domainkey.DOMAIN. Each gets one Result:

        pass       the signature holds
        fail       the body or a signed header changed, or the
                   signature does not match the key
        neutral    no signature to check (not used per field)
        temperror  the key record could not be fetched now
        permerror  a malformed signature, an expired one (x=), an
                   algorithm other than rsa-sha256 and ed25519-sha256,
                   no key record, a revoked or malformed key

    The message is taken as it travels (CRLF or LF line ends).

SECURITY
    Sees an untrusted message and untrusted DNS answers: every tag and
    key is parsed defensively; nothing is executed or written.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from mta.common.dkim import header_fields
from mta.common.dkim_canon import BodyCanon, header_relaxed, header_simple

TxtLookup = Callable[[str], tuple[str, list[str]]]
_B_VALUE = re.compile(rb"(\bb\s*=)[^;]*")  # b= and its value, for the header hash


@dataclass
class Result:
    result: str
    domain: str = ""
    selector: str = ""
    algorithm: str = ""
    reason: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def _split(message: bytes) -> tuple[list[bytes], bytes]:
    """(header fields with CRLF folds, no final line end; body with CRLF line ends)."""
    text = message.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    head, sep, body = text.partition(b"\r\n\r\n")
    if not sep and head.endswith(b"\r\n"):
        head = head[:-2]
    return header_fields(head), body


def tag_list(value: bytes) -> dict[str, bytes]:
    """A DKIM tag=value list; ValueError when malformed or a tag repeats."""
    tags: dict[str, bytes] = {}
    for part in value.split(b";"):
        part = part.strip(b" \t\r\n")
        if not part:
            continue
        name, eq, val = part.partition(b"=")
        name = name.strip(b" \t\r\n").decode("ascii", "replace")
        if not eq or not name or name in tags:
            raise ValueError(f"bad tag list near {part[:20]!r}")
        tags[name] = val.strip(b" \t\r\n")
    return tags


def _nows(value: bytes) -> bytes:
    return re.sub(rb"[ \t\r\n]+", b"", value)


def _body_hash(body: bytes, relaxed: bool, limit: int | None) -> bytes:
    canon = BodyCanon(relaxed)
    data = bytearray()
    lines = body.split(b"\r\n")
    if lines and lines[-1] == b"":
        lines.pop()
    for line in lines:
        data += canon.line(line)
    data += canon.finish()
    if limit is not None:
        data = data[:limit]
    return hashlib.sha256(bytes(data)).digest()


def _public_key(record: str, algorithm: str):
    """The key of a DKIM key record; ValueError when unusable for algorithm."""
    tags = tag_list(record.encode())
    if tags.get("v", b"DKIM1") != b"DKIM1":
        raise ValueError("key record is not v=DKIM1")
    kind = tags.get("k", b"rsa").decode("ascii", "replace")
    if "p" not in tags:
        raise ValueError("key record has no p=")
    raw = _nows(tags["p"])
    if not raw:
        raise ValueError("key revoked (empty p=)")
    data = base64.b64decode(raw, validate=True)
    if kind == "ed25519":
        if algorithm != "ed25519-sha256":
            raise ValueError("key type ed25519 does not match a=")
        return ed25519.Ed25519PublicKey.from_public_bytes(data)
    if kind != "rsa" or algorithm != "rsa-sha256":
        raise ValueError(f"key type {kind} does not match a=")
    key = serialization.load_der_public_key(data)
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("p= is not an RSA key")
    if key.key_size < 1024:
        raise ValueError(f"RSA key of {key.key_size} bits is too short")
    return key


def _check_one(
    field: bytes, fields: list[bytes], body: bytes, lookup: TxtLookup, now: float
) -> Result:
    name, _, value = field.partition(b":")
    try:
        tags = tag_list(value)
    except ValueError as exc:
        return Result("permerror", reason=str(exc))
    domain = tags.get("d", b"").decode("ascii", "replace").lower()
    selector = tags.get("s", b"").decode("ascii", "replace")
    algorithm = tags.get("a", b"").decode("ascii", "replace")
    res = Result("permerror", domain, selector, algorithm)
    for need in ("v", "a", "b", "bh", "d", "h", "s"):
        if need not in tags:
            res.reason = f"no {need}= tag"
            return res
    if tags["v"] != b"1":
        res.reason = "v= is not 1"
        return res
    if algorithm not in ("rsa-sha256", "ed25519-sha256"):
        res.reason = f"algorithm {algorithm} not supported"
        return res
    head, _, body_canon = tags.get("c", b"simple/simple").decode("ascii", "replace").partition("/")
    body_canon = body_canon or "simple"
    if head not in ("simple", "relaxed") or body_canon not in ("simple", "relaxed"):
        res.reason = "bad c= value"
        return res
    try:
        limit = int(tags["l"]) if "l" in tags else None
        if "x" in tags and int(tags["x"]) < now:
            res.reason = "signature expired"
            return res
        signature = base64.b64decode(_nows(tags["b"]), validate=True)
        body_hash = base64.b64decode(_nows(tags["bh"]), validate=True)
    except ValueError:
        res.reason = "bad l=, x=, b= or bh= value"
        return res
    if _body_hash(body, body_canon == "relaxed", limit) != body_hash:
        res.result, res.reason = "fail", "body hash mismatch"
        return res

    def canon(raw: bytes) -> bytes:
        n, _, v = raw.partition(b":")
        return header_relaxed(n, v) if head == "relaxed" else header_simple(n, v)

    by_name: dict[bytes, list[bytes]] = {}
    for raw in fields:
        by_name.setdefault(raw.partition(b":")[0].strip(b" \t").lower(), []).append(raw)
    data = bytearray()
    for hname in _nows(tags["h"]).lower().split(b":"):
        present = by_name.get(hname)
        if present:
            data += canon(present.pop())  # bottom-up; a name beyond those present adds nothing
    data += canon(_B_VALUE.sub(rb"\1", field, count=1))[:-2]
    status, records = lookup(f"{selector}._domainkey.{domain}")
    if status == "retry":
        res.result, res.reason = "temperror", "key record lookup failed"
        return res
    if status != "ok" or not records:
        res.reason = "no key record"
        return res
    try:
        key = _public_key(records[0], algorithm)
    except ValueError as exc:
        res.reason = str(exc)
        return res
    try:
        if algorithm == "ed25519-sha256":
            key.verify(signature, hashlib.sha256(bytes(data)).digest())
        else:
            key.verify(signature, bytes(data), padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        res.result, res.reason = "fail", "signature does not verify"
        return res
    res.result = "pass"
    return res


def verify_message(message: bytes, lookup: TxtLookup, now: float | None = None) -> list[Result]:
    """One Result per DKIM-Signature field of message, in order; [] for none."""
    fields, body = _split(message)
    when = time.time() if now is None else now
    return [
        _check_one(f, fields, body, lookup, when)
        for f in fields
        if f.partition(b":")[0].strip(b" \t").lower() == b"dkim-signature"
    ]
