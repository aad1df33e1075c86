"""common.dkim - DKIM signing (RFC 6376 with rsa-sha256, RFC 8463 with ed25519-sha256)

SYNOPSIS
    from mta.common.dkim import DkimKey, Signer, load_key, generate_key, dns_record
    key = load_key("example.com", "s2026", "/etc/mta/dkim/example.com.s2026.pem")
    signer = Signer([key], canon="relaxed/relaxed")
    for line in body_lines:                  # without line ends, as queue files keep them
        signer.body_line(line)
    fields = signer.sign(header_lines, now)  # one "DKIM-Signature: ..." per key

DESCRIPTION
    A Signer makes one signature per key over one message: the body is
    fed line by line (hashed as it comes, with the dkimcanon kernel, so
    a large body is never held), then sign() takes the message's header
    fields, each the whole field as raw bytes (name, colon, value, folds
    as LF or CRLF followed by white space, no final line end), and
    returns the DKIM-Signature fields to put on top, in key order, each
    with CRLF folds and no final line end.

    Signed header fields (h=): every field of the message whose name is
    in headers, once per occurrence, and the names in oversign once more
    (RFC 6376 section 8.15: no one can add such a field later without
    breaking the signature). The defaults sign what identifies and
    describes a message and over-sign From, Subject, Date, To and
    Message-ID. l= is never used: it lets anyone append content.

    canon is "header/body", each "relaxed" or "simple" ("simple" alone
    is "simple/simple"). rsa-sha256 keys have 1024 to 4096 bits;
    ed25519-sha256 keys sign the SHA-256 hash of the header data, as RFC
    8463 says. t= is the signing time; x= (expire seconds after t=) only
    when asked for.

    placeholders() gives sign()'s fields laid out the same for the same
    headers and time, with zeros for the body hash and the signature, so
    that a queue file can hold their place before the body is read.
    header_fields() splits a header section (CRLF line ends) into its
    fields, as sign() takes them.

    load_key() refuses a key file that others than its owner can read
    or write, a file that is not a PEM private key, and an RSA key of a
    size outside 1024-4096 bits: DkimError, naming the file.
    generate_key() makes a new key; dns_record() is the TXT record
    ("v=DKIM1; k=rsa; p=...") that publishes its public half.

SECURITY
    Reads private keys; never logs or returns them. Sees untrusted
    message content only as bytes to hash.

STANDARDS
    RFC 6376 (DKIM), RFC 8301 (rsa-sha256 only, 1024 bits at least),
    RFC 8463 (Ed25519 for DKIM).
"""

from __future__ import annotations

import base64
import hashlib
import os
import stat
import time
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from mta.common.dkim_canon import BodyCanon, header_relaxed, header_simple

RSA = "rsa-sha256"
ED25519 = "ed25519-sha256"
RSA_BITS = (1024, 4096)  # the key sizes accepted for signing

# what identifies and describes a message (signed when present)
DEFAULT_HEADERS = (
    "From", "Sender", "Reply-To", "Subject", "Date", "Message-ID", "To", "Cc",
    "MIME-Version", "Content-Type", "Content-Transfer-Encoding", "Content-ID",
    "Content-Description", "Resent-Date", "Resent-From", "Resent-Sender",
    "Resent-To", "Resent-Cc", "Resent-Message-ID", "In-Reply-To", "References",
    "List-Id", "List-Help", "List-Unsubscribe", "List-Unsubscribe-Post",
    "List-Subscribe", "List-Post", "List-Owner", "List-Archive", "Feedback-ID",
)  # fmt: skip
DEFAULT_OVERSIGN = ("From", "Subject", "Date", "To", "Message-ID")
FOLD_WIDTH = 76  # where the signature's tag list is folded


class DkimError(Exception):
    """A key or a setting that cannot be used for signing; the text names the file."""


@dataclass(frozen=True)
class DkimKey:
    domain: str
    selector: str
    algorithm: str  # RSA or ED25519
    private_key: object
    path: str = ""


def generate_key(kind: str = "rsa", bits: int = 2048):
    """A new private key: kind "rsa" (bits 1024-4096) or "ed25519"."""
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if kind != "rsa":
        raise DkimError(f"unknown key type {kind!r} (rsa or ed25519)")
    if not RSA_BITS[0] <= bits <= RSA_BITS[1]:
        raise DkimError(f"RSA keys have {RSA_BITS[0]} to {RSA_BITS[1]} bits, not {bits}")
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def private_pem(key) -> bytes:
    """The private key as unencrypted PKCS#8 PEM, as load_key() reads it."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def dns_record(key) -> str:
    """The TXT record that publishes key's public half at SELECTOR._domainkey.DOMAIN."""
    public = key.public_key()
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return "v=DKIM1; k=ed25519; p=" + base64.b64encode(raw).decode()
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()


def load_key(domain: str, selector: str, path: str) -> DkimKey:
    """The signing key in the PEM file at path; DkimError if it cannot be used."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise DkimError(f"{path}: cannot open key file: {exc.strerror}") from exc
    try:
        st = os.fstat(fd)
        if st.st_mode & 0o077:
            raise DkimError(
                f"{path}: key file is open to others (mode {stat.S_IMODE(st.st_mode):04o});"
                " make it 0600 or 0400"
            )
        data = os.read(fd, 1 << 20)
    finally:
        os.close(fd)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise DkimError(f"{path}: not an unencrypted PEM private key") from exc
    if isinstance(key, rsa.RSAPrivateKey):
        if not RSA_BITS[0] <= key.key_size <= RSA_BITS[1]:
            raise DkimError(f"{path}: RSA key of {key.key_size} bits (1024-4096 are used)")
        algorithm = RSA
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        algorithm = ED25519
    else:
        raise DkimError(f"{path}: neither an RSA nor an Ed25519 key")
    return DkimKey(domain.lower().rstrip("."), selector, algorithm, key, path)


def header_fields(head: bytes) -> list[bytes]:
    """The fields of a header section with CRLF line ends: each whole, folds
    kept as CRLF, no final line end."""
    fields: list[bytes] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += b"\r\n" + line
        elif line:
            fields.append(line)
    return fields


def _split_field(raw: bytes) -> tuple[bytes, bytes]:
    name, colon, value = raw.partition(b":")
    if not colon:
        return raw, b""
    return name, value


def _crlf(raw: bytes) -> bytes:
    """raw with every line end as CRLF (queue files keep folds as LF)."""
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def _b64_folded(data: bytes, first: int) -> bytes:
    """base64 of data in pieces for folding: the first piece first bytes long."""
    text = base64.b64encode(data)
    pieces = [text[:first]] + [text[i : i + 72] for i in range(first, len(text), 72)]
    return b"\r\n\t".join(p for p in pieces if p)


def _fold_tags(tags: list[bytes]) -> bytearray:
    """ "DKIM-Signature:" and the tags, folded before FOLD_WIDTH; a long h= is
    folded after its colons, where RFC 6376 allows white space."""
    field = bytearray(b"DKIM-Signature:")
    width = len(field)
    for tag in tags:
        pieces = tag.split(b":")
        pieces = [p + b":" for p in pieces[:-1]] + [pieces[-1] + b";"]
        first = True
        for piece in pieces:
            sep = b" " if first else b""
            if width + len(sep) + len(piece) > FOLD_WIDTH and width > 1:
                field += b"\r\n\t"
                width = 1
                sep = b""
            field += sep + piece
            width += len(sep) + len(piece)
            first = False
    return field


def _sig_size(key: DkimKey) -> int:
    """The length in bytes of key's signatures."""
    if key.algorithm == ED25519:
        return 64
    return (key.private_key.key_size + 7) // 8


class Signer:
    """The DKIM signatures of one message, one per key; see the module docstring."""

    def __init__(
        self,
        keys: list[DkimKey],
        canon: str = "relaxed/relaxed",
        headers: tuple[str, ...] | list[str] = DEFAULT_HEADERS,
        oversign: tuple[str, ...] | list[str] = DEFAULT_OVERSIGN,
        expire: int = 0,
    ) -> None:
        head, _, body = canon.lower().partition("/")
        body = body or "simple"
        if head not in ("relaxed", "simple") or body not in ("relaxed", "simple"):
            raise DkimError(f"bad canonicalization {canon!r} (relaxed or simple, twice)")
        self.keys = list(keys)
        self.head_relaxed = head == "relaxed"
        self.canon = f"{head}/{body}"
        self.headers = [h.lower() for h in headers]
        self.oversign = {h.lower() for h in oversign}
        for name in self.oversign:
            if name not in self.headers:
                self.headers.append(name)
        self.expire = expire
        self.body = BodyCanon(body == "relaxed")
        self.body_hash = hashlib.sha256()

    def body_line(self, line: bytes) -> None:
        """One line of the body, without its line end."""
        self.body_hash.update(self.body.line(line))

    def body_text(self, text: bytes) -> None:
        """A whole body as it goes out (lines ended by CRLF or LF)."""
        lines = text.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()  # the end of the last line, not an empty line after it
        for line in lines:
            self.body_line(line[:-1] if line.endswith(b"\r") else line)

    def _canon_field(self, raw: bytes) -> bytes:
        name, value = _split_field(raw)
        if self.head_relaxed:
            return header_relaxed(name, value)
        return header_simple(_crlf(name), _crlf(value))

    def _selected(self, fields: list[bytes]) -> tuple[list[str], bytes]:
        """The h= names and the canonical header data they sign (bottom-up per name)."""
        by_name: dict[str, list[bytes]] = {}
        for raw in fields:
            name = _split_field(raw)[0].strip(b" \t").decode("ascii", "replace").lower()
            by_name.setdefault(name, []).append(raw)
        names: list[str] = []
        data = bytearray()
        for name in self.headers:
            present = by_name.get(name, [])
            for raw in reversed(present):  # the last occurrence is signed first
                names.append(name)
                data += self._canon_field(raw)
            if name in self.oversign:
                names.append(name)  # names one more than there is: none can be added
        return names, bytes(data)

    def sign(self, fields: list[bytes], now: float | None = None) -> list[bytes]:
        """The DKIM-Signature fields (one per key, CRLF folds, no final line end)."""
        self.body_hash.update(self.body.finish())
        return self._fields(fields, now, self.body_hash.digest(), self._sign_data)

    def placeholders(self, fields: list[bytes], now: float) -> list[bytes]:
        """sign()'s fields as they will be laid out for the same fields and now,
        with zero bytes for the body hash and the signature: a queue file can
        hold their place before the body is read (their lines keep their
        lengths, so the real fields overwrite them in place)."""
        return self._fields(fields, now, bytes(32), lambda key, data: bytes(_sig_size(key)))

    def _fields(
        self, fields: list[bytes], now: float | None, digest: bytes, sign_fn
    ) -> list[bytes]:
        bh = base64.b64encode(digest)
        names, data = self._selected(fields)
        stamp = int(time.time() if now is None else now)
        out = []
        for key in self.keys:
            tags = [
                b"v=1",
                b"a=" + key.algorithm.encode(),
                b"c=" + self.canon.encode(),
                b"d=" + key.domain.encode("idna" if not key.domain.isascii() else "ascii"),
                b"s=" + key.selector.encode(),
                b"t=" + str(stamp).encode(),
            ]
            if self.expire:
                tags.append(b"x=" + str(stamp + self.expire).encode())
            tags.append(b"h=" + ":".join(names).encode())
            tags.append(b"bh=" + bh)
            field = _fold_tags(tags)
            field += b"\r\n\tb="
            unsigned = self._canon_field(bytes(field))[:-2]  # no CRLF after this one
            signature = sign_fn(key, data + unsigned)
            out.append(bytes(field) + _b64_folded(signature, 70))
        return out

    @staticmethod
    def _sign_data(key: DkimKey, data: bytes) -> bytes:
        if key.algorithm == ED25519:
            return key.private_key.sign(hashlib.sha256(data).digest())
        return key.private_key.sign(data, padding.PKCS1v15(), hashes.SHA256())
