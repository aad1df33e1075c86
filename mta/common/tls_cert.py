"""common.tls_cert - what TLS policy needs from an X.509 certificate, read from its DER

SYNOPSIS
    from mta.common.tls_cert import cert_fingerprint, pkey_fingerprint, subject_cn, issuer_cn
    cert_fingerprint(der, "sha256")   # "AB:CD:..."
    pkey_fingerprint(der, "sha256")   # of the SubjectPublicKeyInfo
    subject_cn(der), issuer_cn(der)   # "" when the name has no CommonName
    one_label_wildcard("*.example.com", "mx.example.com")   # True

DESCRIPTION
    Fingerprints are written as Postfix writes them: the digest in upper
    case hexadecimal, a colon between bytes. The digest is any name
    hashlib knows (Postfix's *_tls_fingerprint_digest: md5, sha1,
    sha256 ...). The public-key fingerprint digests the DER of the
    certificate's SubjectPublicKeyInfo, so it stays the same when the
    certificate is renewed with the same key.

    one_label_wildcard() is the RFC 6125 section 6.4.3 rule that
    certificate names (tls_verify, DANE) and MTA-STS mx patterns share:
    "*.rest" stands for exactly one more label on the left of rest. The
    caller normalises case and the trailing dot.

    A small DER reader walks the certificate to the issuer, subject and
    public key fields; CertError when the bytes are not a certificate.

SECURITY
    Sees certificates that peers present (untrusted); reads only within
    the bytes given, never recurses without bound.
"""

from __future__ import annotations

import hashlib

_CN_OID = bytes.fromhex("0603550403")  # id-at-commonName, with its tag and length
_STRING_CODECS = {0x0C: "utf-8", 0x13: "ascii", 0x16: "ascii", 0x14: "latin-1", 0x1E: "utf-16-be"}


class CertError(ValueError):
    """The bytes are not a DER certificate this reader understands."""


def _tlv(buf: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, start of content, end of content) of the element at pos."""
    if pos + 2 > end:
        raise CertError("truncated certificate")
    tag, first = buf[pos], buf[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        n = first & 0x7F
        if n == 0 or n > 4 or pos + n > end:
            raise CertError("bad length in certificate")
        length = int.from_bytes(buf[pos : pos + n], "big")
        pos += n
    if pos + length > end:
        raise CertError("truncated certificate")
    return tag, pos, pos + length


def _children(buf: bytes, start: int, end: int) -> list[tuple[int, int, int, int]]:
    """(tag, element start, content start, content end) of each element in start..end."""
    out = []
    pos = start
    while pos < end:
        tag, cstart, cend = _tlv(buf, pos, end)
        out.append((tag, pos, cstart, cend))
        pos = cend
    return out


def _tbs_fields(der: bytes) -> list[tuple[int, int, int, int]]:
    """The fields of tbsCertificate, with the optional version dropped."""
    tag, start, end = _tlv(der, 0, len(der))
    if tag != 0x30:
        raise CertError("not a certificate")
    fields = _children(der, start, end)
    if not fields or fields[0][0] != 0x30:
        raise CertError("not a certificate")
    tbs = _children(der, fields[0][2], fields[0][3])
    if tbs and tbs[0][0] == 0xA0:
        tbs = tbs[1:]
    # serial, signature, issuer, validity, subject, subjectPublicKeyInfo
    if len(tbs) < 6:
        raise CertError("not a certificate")
    return tbs


def _common_name(der: bytes, field: tuple[int, int, int, int]) -> str:
    for _, _, set_start, set_end in _children(der, field[2], field[3]):
        for _, _, seq_start, seq_end in _children(der, set_start, set_end):
            parts = _children(der, seq_start, seq_end)
            if len(parts) == 2 and der[parts[0][1] : parts[0][3]] == _CN_OID:
                tag, _, vstart, vend = parts[1]
                codec = _STRING_CODECS.get(tag, "latin-1")
                return der[vstart:vend].decode(codec, "replace")
    return ""


def subject_cn(der: bytes) -> str:
    """The subject's CommonName, or ""."""
    return _common_name(der, _tbs_fields(der)[4])


def issuer_cn(der: bytes) -> str:
    """The issuer's CommonName, or ""."""
    return _common_name(der, _tbs_fields(der)[2])


def public_key_info(der: bytes) -> bytes:
    """The DER of the certificate's SubjectPublicKeyInfo."""
    field = _tbs_fields(der)[5]
    return der[field[1] : field[3]]


def _hex(data: bytes, digest: str) -> str:
    try:
        h = hashlib.new(digest.strip().lower(), data)
    except ValueError:
        raise ValueError(f"unknown digest: {digest}") from None
    return ":".join(f"{b:02X}" for b in h.digest())


def cert_fingerprint(der: bytes, digest: str) -> str:
    """The certificate's fingerprint, as Postfix writes it."""
    return _hex(der, digest)


def pkey_fingerprint(der: bytes, digest: str) -> str:
    """The fingerprint of the certificate's public key (SubjectPublicKeyInfo)."""
    return _hex(public_key_info(der), digest)


def one_label_wildcard(wildcard: str, name: str) -> bool:
    """Does name have exactly one label more than "*.rest", and end in rest?"""
    if not wildcard.startswith("*.") or "*" in wildcard[1:]:
        return False
    first, dot, rest = name.partition(".")
    return bool(first and dot) and rest == wildcard[2:]
