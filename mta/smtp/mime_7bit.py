"""smtp.mime_7bit - make an 8-bit message 7-bit for a server without 8BITMIME

SYNOPSIS
    from mta.smtp.mime_7bit import downgrade_8bit
    data7 = downgrade_8bit(data)         # CRLF content in, CRLF content out

DESCRIPTION
    When the message has 8-bit content and the server does not offer
    8BITMIME, the smtp client converts it (unless
    disable_mime_output_conversion is set). downgrade_8bit() walks the
    MIME structure: the top-level entity and, inside multipart entities
    (found by their boundary), each part, recursively up to
    MIME_MAX_DEPTH. A leaf entity whose body contains 8-bit bytes gets a
    quoted-printable body and its Content-Transfer-Encoding header is
    replaced by "Content-Transfer-Encoding: quoted-printable". Bodies
    that are 7-bit, headers, preambles and epilogues pass through
    unchanged (8-bit header text cannot be converted without knowing
    its charset; Postfix leaves it too).

SECURITY
    Sees untrusted message content; the work is linear in its size, and
    nesting is bounded.

STANDARDS
    RFC 2045 (MIME, quoted-printable), RFC 2046 (multipart), RFC 6152.
"""

from __future__ import annotations

import quopri
import re

MIME_MAX_DEPTH = 20  # multipart nesting followed

_BOUNDARY = re.compile(rb'boundary\s*=\s*(?:"([^"]+)"|([^\s;]+))', re.IGNORECASE)


def _split_entity(data: bytes) -> tuple[bytes, bytes, bytes]:
    """(header block with its line ends, the empty line, body)."""
    if data.startswith(b"\r\n"):
        return b"", b"\r\n", data[2:]
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return data, b"", b""
    return data[: end + 2], b"\r\n", data[end + 4 :]


def _fields(header: bytes) -> list[bytes]:
    """Header fields with their folded continuation lines, each with its line ends."""
    out: list[bytes] = []
    for line in header.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and out:
            out[-1] += line
        else:
            out.append(line)
    return out


def _field_value(fields: list[bytes], name: bytes) -> bytes | None:
    for field in fields:
        key, colon, value = field.partition(b":")
        if colon and key.strip().lower() == name:
            return b" ".join(value.split())
    return None


def _qp(body: bytes) -> bytes:
    text = body.replace(b"\r\n", b"\n")
    return quopri.encodestring(text).replace(b"\n", b"\r\n")


def downgrade_8bit(data: bytes, depth: int = 0) -> bytes:
    """data with every 8-bit leaf body made quoted-printable."""
    if data.isascii():
        return data
    header, blank, body = _split_entity(data)
    fields = _fields(header)
    ctype = (_field_value(fields, b"content-type") or b"text/plain").lower()
    if ctype.startswith(b"multipart/") and depth < MIME_MAX_DEPTH:
        m = _BOUNDARY.search(_field_value(fields, b"content-type") or b"")
        if m:
            boundary = m.group(1) or m.group(2)
            return header + blank + _downgrade_multipart(body, boundary, depth)
    if body.isascii():
        return data
    kept = [
        f for f in fields if f.partition(b":")[0].strip().lower() != b"content-transfer-encoding"
    ]
    kept.append(b"Content-Transfer-Encoding: quoted-printable\r\n")
    return b"".join(kept) + (blank or b"\r\n") + _qp(body)


def _downgrade_multipart(body: bytes, boundary: bytes, depth: int) -> bytes:
    delim = b"--" + boundary
    lines = body.split(b"\r\n")
    if body.endswith(b"\r\n"):
        lines.pop()  # the empty piece after the last line end
    out: list[bytes] = []
    part: list[bytes] | None = None
    for line in lines:
        stripped = line.rstrip(b" \t")
        if stripped == delim or stripped == delim + b"--":
            if part is not None:
                out.append(_part(part, depth))
            out.append(line + b"\r\n")
            part = None if stripped.endswith(b"--") and stripped != delim else []
            continue
        if part is None:
            out.append(line + b"\r\n")
        else:
            part.append(line)
    if part is not None:
        out.append(_part(part, depth))
    joined = b"".join(out)
    # the split added a line end after the last piece that the input may lack
    if not body.endswith(b"\r\n") and joined.endswith(b"\r\n"):
        joined = joined[:-2]
    return joined


def _part(lines: list[bytes], depth: int) -> bytes:
    """One part: its lines up to (not including) the CRLF before the next delimiter."""
    text = b"\r\n".join(lines) + b"\r\n" if lines else b""
    converted = downgrade_8bit(text, depth + 1)
    return converted if converted.endswith(b"\r\n") or not converted else converted + b"\r\n"
