"""common.xforward - the XFORWARD commands sent to a content filter (smtp client, smtpd proxy)

SYNOPSIS
    from mta.common.xforward import xforward_lines
    lines = xforward_lines(job.req.attrs, job.req.queue_id, session.features["XFORWARD"])

DESCRIPTION
    With smtp_send_xforward_command = yes (lmtp_send_xforward_command
    for LMTP) and a server whose EHLO reply announces XFORWARD, the
    client tells it, before MAIL FROM, who sent the message to this
    system: NAME, ADDR, PORT, PROTO and HELO from the envelope
    attributes cleanup kept (client_name, client_address, client_port,
    protocol, helo_name), IDENT (this system's queue id) and SOURCE
    (LOCAL for mail submitted on this host, REMOTE otherwise). Only
    the attributes the server named are sent; one it cannot have is
    "[UNAVAILABLE]"; an IPv6 address gets the "IPV6:" prefix. Values
    are xtext. The client attributes go in one command and the others
    in a second, so that neither passes the 512-byte SMTP command line.

SECURITY
    The values come from the queue file (cleanup wrote them from smtpd's
    session); xtext keeps any byte from splitting the command line.

STANDARDS
    Postfix XFORWARD_README; RFC 3461 (xtext).
"""

from __future__ import annotations

UNAVAILABLE = "[UNAVAILABLE]"  # the attribute is not known
CLIENT_GROUP = ("NAME", "ADDR", "PORT")  # first command
MESSAGE_GROUP = ("PROTO", "HELO", "IDENT", "SOURCE")  # second command


def _xtext(text: str) -> str:
    out = []
    for byte in text.encode("utf-8"):
        out.append(chr(byte) if 33 <= byte <= 126 and byte not in (43, 61) else f"+{byte:02X}")
    return "".join(out)


def xforward_values(attrs: dict, queue_id: str) -> dict[str, str]:
    """The XFORWARD attribute values of a message ("" where unknown)."""
    addr = attrs.get("client_address", "")
    name = attrs.get("client_name", "")
    port = attrs.get("client_port", "")
    proto = attrs.get("protocol", "")
    local = not addr or proto == "local" or attrs.get("rewrite_context", "") == "local"
    if addr == "unknown":
        addr = ""
    return {
        "NAME": "" if name == "unknown" else name,
        "ADDR": f"IPV6:{addr}" if ":" in addr else addr,
        "PORT": port if port.isdigit() and port != "0" else "",
        "PROTO": proto,
        "HELO": attrs.get("helo_name", ""),
        "IDENT": queue_id,
        "SOURCE": "LOCAL" if local else "REMOTE",
    }


def xforward_lines(attrs: dict, queue_id: str, offered: str) -> list[bytes]:
    """The XFORWARD command lines (no CRLF) for a server that offered these names."""
    names = set(offered.upper().split())
    values = xforward_values(attrs, queue_id)
    lines = []
    for group in (CLIENT_GROUP, MESSAGE_GROUP):
        words = [
            f"{n}={_xtext(values[n]) if values[n] else UNAVAILABLE}" for n in group if n in names
        ]
        if words:
            lines.append(("XFORWARD " + " ".join(words)).encode("ascii"))
    return lines
