"""cleanup.headers - the headers cleanup writes, and address rewriting inside headers

SYNOPSIS
    from mta.cleanup.headers import (
        mail_date, received_header, message_id_header, from_header, rewrite_address_header,
        ADDRESS_HEADERS)
    mail_date(time.time())                  # "Sat, 28 Nov 2026 12:00:00 +0000 (UTC)"
    received_header(attrs, "QID", "mx.example", "mta", "rcpt@x", now)
    rewrite_address_header(raw, fn)         # raw with each address replaced by fn(address)

DESCRIPTION
    mail_date() is the RFC 5322 date Postfix writes: English day and
    month names whatever the locale, a space-padded day, the numeric
    offset and the zone name in parentheses.

    received_header() builds the trace header cleanup puts first, in
    Postfix's form:

        Received: from HELO (NAME [ADDR])
        <TAB>by MYHOSTNAME (MAIL_NAME) with PROTO id QUEUEID
        <TAB>for <RCPT>; DATE

    "for" only when the message has one recipient; an IPv6 client is
    written "IPv6:addr"; without HELO the client name stands in. Local
    submissions (protocol "local" or no client address) give
    "Received: by MYHOSTNAME (MAIL_NAME, from userid UID)" and "id".

    message_id_header() and from_header() make the headers added when
    they are missing: "Message-Id: <YYYYMMDDhhmmss.QUEUEID@MYHOSTNAME>",
    and From: in header_from_format "standard" ('Full Name <addr>') or
    "obsolete" ('addr (Full Name)').

    ADDRESS_HEADERS maps the header numbers whose values are address
    lists to the class used for canonical mapping and masquerading
    ("header_sender" or "header_recipient"). rewrite_address_header()
    calls fn on each address of such a header (address kernel spans)
    and puts the results back in place, keeping display names, comments
    and folding; it returns raw itself when nothing changed. Addresses
    past header_address_token_limit are left as they are.

SECURITY
    Header values are untrusted; they are parsed by the address kernel
    and only their address parts are replaced.

STANDARDS
    RFC 5322 sections 3.3 (dates), 3.6.7 (trace fields); RFC 5321
    section 4.4 (Received).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from mta.cleanup import header_parse as H
from mta.trivial_rewrite.address import scan_addr_list

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

CLASS_HDR_SENDER = "header_sender"  # as in cleanup.addresses
CLASS_HDR_RECIPIENT = "header_recipient"

ADDRESS_HEADERS: dict[int, str] = {
    H.HDR_FROM: CLASS_HDR_SENDER,
    H.HDR_SENDER: CLASS_HDR_SENDER,
    H.HDR_REPLY_TO: CLASS_HDR_SENDER,
    H.HDR_ERRORS_TO: CLASS_HDR_SENDER,
    H.HDR_RETURN_RECEIPT_TO: CLASS_HDR_SENDER,
    H.HDR_DISP_NOTIFICATION: CLASS_HDR_SENDER,
    H.HDR_RESENT_FROM: CLASS_HDR_SENDER,
    H.HDR_RESENT_SENDER: CLASS_HDR_SENDER,
    H.HDR_RESENT_REPLY_TO: CLASS_HDR_SENDER,
    H.HDR_TO: CLASS_HDR_RECIPIENT,
    H.HDR_CC: CLASS_HDR_RECIPIENT,
    H.HDR_BCC: CLASS_HDR_RECIPIENT,
    H.HDR_APPARENTLY_TO: CLASS_HDR_RECIPIENT,
    H.HDR_RESENT_TO: CLASS_HDR_RECIPIENT,
    H.HDR_RESENT_CC: CLASS_HDR_RECIPIENT,
    H.HDR_RESENT_BCC: CLASS_HDR_RECIPIENT,
}

RESENT_HEADERS = frozenset(
    {
        H.HDR_RESENT_BCC,
        H.HDR_RESENT_CC,
        H.HDR_RESENT_DATE,
        H.HDR_RESENT_FROM,
        H.HDR_RESENT_MESSAGE_ID,
        H.HDR_RESENT_REPLY_TO,
        H.HDR_RESENT_SENDER,
        H.HDR_RESENT_TO,
    }
)


_last_date: tuple[int, str] = (-1, "")  # the last second formatted, and its text


def mail_date(when: float) -> str:
    """RFC 5322 date in Postfix's form, local time."""
    global _last_date
    second = int(when)
    if _last_date[0] == second:
        return _last_date[1]  # a busy smtpd stamps many messages in the same second
    text = _format_date(second)
    _last_date = (second, text)
    return text


def _format_date(when: int) -> str:
    lt = time.localtime(when)
    offset = lt.tm_gmtoff or 0
    sign = "-" if offset < 0 else "+"
    hours, minutes = divmod(abs(offset) // 60, 60)
    zone = lt.tm_zone or "UTC"
    return (
        f"{_DAYS[lt.tm_wday]}, {lt.tm_mday:2d} {_MONTHS[lt.tm_mon - 1]} {lt.tm_year} "
        f"{lt.tm_hour:02d}:{lt.tm_min:02d}:{lt.tm_sec:02d} {sign}{hours:02d}{minutes:02d} ({zone})"
    )


def received_header(
    attrs: dict,
    queue_id: str,
    myhostname: str,
    mail_name: str,
    rcpt_for: str | None,
    when: float,
    comment: str = "",
) -> str:
    """The Received: header (lines joined with "\\n", no final line end).

    comment: lines (joined with "\\n") between "from" and "by", such as
    smtpd's "(using TLSv1.3 with cipher ...)" and "(Authenticated sender:
    USER)."""
    addr = attrs.get("client_address", "")
    proto = attrs.get("protocol", "")
    if not addr or proto == "local":
        uid = attrs.get("uid", "")
        by = f"{mail_name}, from userid {uid}" if uid != "" else mail_name
        return f"Received: by {myhostname} ({by})\n\tid {queue_id}; {mail_date(when)}"
    name = attrs.get("client_name") or "unknown"
    helo = attrs.get("helo_name") or name
    shown = f"IPv6:{addr}" if ":" in addr else addr
    text = f"Received: from {helo} ({name} [{shown}])\n"
    for line in comment.split("\n") if comment else ():
        text += f"\t{line}\n"
    text += f"\tby {myhostname} ({mail_name}) with {proto or 'SMTP'} id {queue_id}"
    if rcpt_for is not None:
        text += f"\n\tfor <{rcpt_for}>"
    return f"{text}; {mail_date(when)}"


def message_id_header(queue_id: str, myhostname: str, when: float, resent: bool = False) -> str:
    stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(when))
    name = "Resent-Message-Id" if resent else "Message-Id"
    return f"{name}: <{stamp}.{queue_id}@{myhostname}>"


def _phrase(name: str) -> str:
    """A display name, quoted when it holds specials."""
    if name and all(c.isalnum() or c in " !#$%&'*+-/=?^_`{|}~" for c in name):
        return name
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def from_header(sender: str, full_name: str, style: str, resent: bool = False) -> str:
    """The From: header cleanup adds for a local submission."""
    label = "Resent-From" if resent else "From"
    if not full_name:
        return f"{label}: {sender}"
    full_name = " ".join(full_name.split())
    if style == "obsolete":
        safe = full_name.replace("(", "").replace(")", "").replace("\\", "")
        return f"{label}: {sender} ({safe})"
    return f"{label}: {_phrase(full_name)} <{sender}>"


def rewrite_address_header(raw: bytes, fn: Callable[[str], str], token_limit: int = 10240) -> bytes:
    """raw with fn applied to each address of its value; raw itself when unchanged."""
    colon = raw.find(b":")
    if colon < 0:
        return raw
    start = colon + 1
    value = raw[start:]
    spans = scan_addr_list(value)
    if not spans:
        return raw
    out = bytearray()
    last = 0
    changed = False
    for count, (a, b, addr) in enumerate(spans):
        if count >= token_limit:
            break
        if not addr:
            continue
        text = addr.decode("utf-8", "surrogateescape")
        new = fn(text)
        if new == text:
            continue
        changed = True
        out += value[last:a]
        out += new.encode("utf-8", "surrogateescape")
        last = b
    if not changed:
        return raw
    out += value[last:]
    return raw[:start] + bytes(out)
