"""The stdlib email package as an oracle for address lists and header unfolding."""

from __future__ import annotations

import email.parser
import email.policy
import email.utils


def addresses(value: str) -> list[str]:
    """Non-empty addresses of an address-list header value, per email.utils."""
    return [addr for _, addr in email.utils.getaddresses([value]) if addr]


def header_fields(raw: bytes) -> list[tuple[str, str]]:
    """(name, unfolded value) of each header of raw, per the compat32 parser.

    The value is what the parser keeps after the colon, with each folding
    line end (CRLF or LF followed by a blank) removed.
    """
    msg = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw)
    out = []
    for name, value in msg.raw_items():
        text = str(value)
        out.append((name, text.replace("\r\n", "").replace("\n", "")))
    return out
