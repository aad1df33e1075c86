"""milter.protocol - the Sendmail milter wire protocol (version 6), MTA side

SYNOPSIS
    from mta.milter import protocol as P
    data = P.encode_packet(P.SMFIC_HELO, P.cstrings("mail.example"))
    decoder = P.PacketDecoder(limit=P.MAX_REPLY_DATA)
    for cmd, payload in decoder.feed(received): ...
    reply = P.parse_reply(cmd, payload)          # a Reply; MilterProtocolError when malformed

DESCRIPTION
    Every packet is a 32-bit network-order length (the command byte
    included), one command byte and its data. The MTA sends SMFIC_*
    commands; the milter answers with SMFIR_* replies. Strings are
    NUL-terminated. The first exchange is SMFIC_OPTNEG: version,
    actions (what the milter may change, SMFIF_*) and protocol flags
    (SMFIP_*: events it need not see, NR_* events it will not answer,
    SKIP, RCPT_REJ, HDR_LEADSPC). A version 6 milter may append
    SETSYMLIST entries to its OPTNEG reply: per stage, the macros it
    wants (SMFIM_*).

    PacketDecoder is a push parser: feed() takes bytes cut anywhere
    and returns the complete packets. A length of zero or past its
    limit raises MilterProtocolError at once, before any of the data
    is buffered, so a peer sending garbage costs at most the limit.

SECURITY
    Sees what a milter sends: the milter is trusted configuration, but
    its replies are still checked (lengths, NUL terminators, numbers)
    and never trusted to be well formed.

STANDARDS
    Sendmail's libmilter (mfdef.h, mfapi.h): protocol version 6.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

# --- commands, MTA to milter
SMFIC_ABORT = b"A"  # abort the current message
SMFIC_BODY = b"B"  # a body chunk
SMFIC_CONNECT = b"C"  # connection information
SMFIC_MACRO = b"D"  # macros for the next command
SMFIC_BODYEOB = b"E"  # end of message
SMFIC_HELO = b"H"  # HELO/EHLO name
SMFIC_QUIT_NC = b"K"  # quit, but a new connection follows
SMFIC_HEADER = b"L"  # one header
SMFIC_MAIL = b"M"  # MAIL FROM and its ESMTP arguments
SMFIC_EOH = b"N"  # end of headers
SMFIC_OPTNEG = b"O"  # option negotiation
SMFIC_QUIT = b"Q"  # close the milter connection
SMFIC_RCPT = b"R"  # RCPT TO and its ESMTP arguments
SMFIC_DATA = b"T"  # DATA
SMFIC_UNKNOWN = b"U"  # an unknown SMTP command

SMFIC_NAMES = {
    SMFIC_ABORT: "SMFIC_ABORT",
    SMFIC_BODY: "SMFIC_BODY",
    SMFIC_CONNECT: "SMFIC_CONNECT",
    SMFIC_MACRO: "SMFIC_MACRO",
    SMFIC_BODYEOB: "SMFIC_BODYEOB",
    SMFIC_HELO: "SMFIC_HELO",
    SMFIC_QUIT_NC: "SMFIC_QUIT_NC",
    SMFIC_HEADER: "SMFIC_HEADER",
    SMFIC_MAIL: "SMFIC_MAIL",
    SMFIC_EOH: "SMFIC_EOH",
    SMFIC_OPTNEG: "SMFIC_OPTNEG",
    SMFIC_QUIT: "SMFIC_QUIT",
    SMFIC_RCPT: "SMFIC_RCPT",
    SMFIC_DATA: "SMFIC_DATA",
    SMFIC_UNKNOWN: "SMFIC_UNKNOWN",
}

# --- replies, milter to MTA
SMFIR_ADDRCPT = b"+"  # add a recipient
SMFIR_DELRCPT = b"-"  # delete a recipient
SMFIR_ADDRCPT_PAR = b"2"  # add a recipient with ESMTP arguments
SMFIR_SHUTDOWN = b"4"  # 421: close the SMTP connection
SMFIR_ACCEPT = b"a"  # accept the message (or connection): no more events
SMFIR_REPLBODY = b"b"  # replace the body (one chunk of it)
SMFIR_CONTINUE = b"c"  # go on
SMFIR_DISCARD = b"d"  # accept and throw away
SMFIR_CHGFROM = b"e"  # change the envelope sender
SMFIR_CONN_FAIL = b"f"  # cause a connection failure
SMFIR_ADDHEADER = b"h"  # add a header at the end
SMFIR_INSHEADER = b"i"  # insert a header at an index
SMFIR_SETSYMLIST = b"l"  # macros wanted (inside the OPTNEG reply)
SMFIR_CHGHEADER = b"m"  # change or delete the nth occurrence of a header
SMFIR_PROGRESS = b"p"  # still working: restart the timeout
SMFIR_QUARANTINE = b"q"  # put the message on hold
SMFIR_REJECT = b"r"  # reject (5xx)
SMFIR_SKIP = b"s"  # send no more of this event (body chunks)
SMFIR_TEMPFAIL = b"t"  # tempfail (4xx)
SMFIR_REPLYCODE = b"y"  # reply with this SMTP code and text
SMFIR_OPTNEG = b"O"  # option negotiation answer

# --- SMFIF_*: actions a milter may take (OPTNEG)
SMFIF_ADDHDRS = 0x01  # add headers
SMFIF_CHGBODY = 0x02  # replace the body
SMFIF_ADDRCPT = 0x04  # add recipients
SMFIF_DELRCPT = 0x08  # delete recipients
SMFIF_CHGHDRS = 0x10  # change or delete headers
SMFIF_QUARANTINE = 0x20  # quarantine
SMFIF_CHGFROM = 0x40  # change the sender
SMFIF_ADDRCPT_PAR = 0x80  # add recipients with arguments
SMFIF_SETSYMLIST = 0x100  # ask for macros
SMFIF_ALL_V6 = 0x1FF  # every action of version 6
SMFIF_ALL_V2 = 0x3F  # every action of versions 2 to 4

# --- SMFIP_*: protocol flags (OPTNEG)
SMFIP_NOCONNECT = 0x01  # no connect event
SMFIP_NOHELO = 0x02  # no HELO event
SMFIP_NOMAIL = 0x04  # no MAIL event
SMFIP_NORCPT = 0x08  # no RCPT event
SMFIP_NOBODY = 0x10  # no body chunks
SMFIP_NOHDRS = 0x20  # no headers
SMFIP_NOEOH = 0x40  # no end of headers
SMFIP_NR_HDR = 0x80  # no reply to each header
SMFIP_NOUNKNOWN = 0x100  # no unknown commands
SMFIP_NODATA = 0x200  # no DATA event
SMFIP_SKIP = 0x400  # the MTA understands SMFIR_SKIP
SMFIP_RCPT_REJ = 0x800  # send rejected recipients too
SMFIP_NR_CONN = 0x1000  # no reply to connect
SMFIP_NR_HELO = 0x2000  # no reply to HELO
SMFIP_NR_MAIL = 0x4000  # no reply to MAIL
SMFIP_NR_RCPT = 0x8000  # no reply to RCPT
SMFIP_NR_DATA = 0x10000  # no reply to DATA
SMFIP_NR_UNKN = 0x20000  # no reply to an unknown command
SMFIP_NR_EOH = 0x40000  # no reply to end of headers
SMFIP_NR_BODY = 0x80000  # no reply to a body chunk
SMFIP_HDR_LEADSPC = 0x100000  # header values keep their leading space
SMFIP_ALL_V6 = 0x1FFFFF  # every protocol flag the MTA offers at version 6
SMFIP_ALL_V2 = 0x7F  # NOCONNECT .. NOEOH: versions 2 to 4 (3, 4 add NOUNKNOWN .. NR_HDR)
SMFIP_ALL_V4 = 0x3FF  # version 4 (no SKIP, RCPT_REJ, NR_*)

# --- SMFIM_*: the stages a SETSYMLIST entry names
SMFIM_CONNECT = 0
SMFIM_HELO = 1
SMFIM_ENVFROM = 2
SMFIM_ENVRCPT = 3
SMFIM_DATA = 4
SMFIM_EOM = 5
SMFIM_EOH = 6

MILTER_CHUNK_SIZE = 65535  # body bytes per SMFIC_BODY, as libmilter expects
MAX_REPLY_DATA = 1 << 20  # the largest reply packet accepted from a milter
LEN = struct.Struct("!I")


class MilterProtocolError(Exception):
    """A milter sent something that is not the protocol."""


def encode_packet(cmd: bytes, data: bytes = b"") -> bytes:
    """One packet: length, command byte, data."""
    return LEN.pack(len(data) + 1) + cmd + data


def cstrings(*values) -> bytes:
    """NUL-terminated strings, str (UTF-8) or bytes."""
    out = []
    for value in values:
        if isinstance(value, str):
            value = value.encode("utf-8", "surrogateescape")
        out.append(value.replace(b"\0", b"") + b"\0")
    return b"".join(out)


def encode_optneg(version: int, actions: int, protocol: int) -> bytes:
    return encode_packet(SMFIC_OPTNEG, struct.pack("!III", version, actions, protocol))


def encode_connect(hostname: str, family: str, port: int, address: str) -> bytes:
    """family: "4", "6", "L" (local socket) or "U" (unknown: no port, no address)."""
    if family == "U":
        return encode_packet(SMFIC_CONNECT, cstrings(hostname) + b"U")
    body = cstrings(hostname) + family.encode("ascii") + struct.pack("!H", port & 0xFFFF)
    return encode_packet(SMFIC_CONNECT, body + cstrings(address))


def encode_macros(stage: bytes, macros: list[tuple[str, str]]) -> bytes:
    """SMFIC_MACRO for the command stage: name, value pairs."""
    flat = []
    for name, value in macros:
        flat += [name, value]
    return encode_packet(SMFIC_MACRO, stage + cstrings(*flat))


class PacketDecoder:
    """Push parser for packets from a milter; see the module docstring."""

    def __init__(self, limit: int = MAX_REPLY_DATA) -> None:
        self.limit = limit
        self.buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        self.buf += data
        packets = []
        while len(self.buf) >= 4:
            (size,) = LEN.unpack_from(self.buf)
            if size < 1:
                raise MilterProtocolError(f"bad packet length: {size}")
            if size - 1 > self.limit:
                raise MilterProtocolError(f"unreasonable packet length: {size - 1} > {self.limit}")
            if len(self.buf) < 4 + size:
                break
            packets.append((bytes(self.buf[4:5]), bytes(self.buf[5 : 4 + size])))
            del self.buf[: 4 + size]
        return packets


@dataclass
class Reply:
    """One decoded reply packet."""

    cmd: bytes
    strings: list[bytes] = field(default_factory=list)  # the NUL-terminated arguments
    index: int = 0  # INSHEADER and CHGHEADER
    raw: bytes = b""  # REPLBODY: the body chunk


@dataclass
class OptNeg:
    """What a milter answered to OPTNEG."""

    version: int
    actions: int
    protocol: int
    symlists: dict[int, list[str]] = field(default_factory=dict)


def split_cstrings(data: bytes, count: int | None = None) -> list[bytes]:
    """data as NUL-terminated strings; exactly count of them when given."""
    if data and not data.endswith(b"\0"):
        raise MilterProtocolError("missing string null terminator")
    parts = data[:-1].split(b"\0") if data else []
    if count is not None and len(parts) != count:
        raise MilterProtocolError(f"expected {count} strings, got {len(parts)}")
    return parts


# reply command -> how many strings it carries (None: any number, min 1)
_STRING_REPLIES = {
    SMFIR_ADDRCPT: 1,
    SMFIR_DELRCPT: 1,
    SMFIR_QUARANTINE: 1,
    SMFIR_REPLYCODE: 1,
    SMFIR_ADDHEADER: 2,
}
_EMPTY_REPLIES = frozenset(
    {
        SMFIR_ACCEPT,
        SMFIR_CONTINUE,
        SMFIR_DISCARD,
        SMFIR_REJECT,
        SMFIR_TEMPFAIL,
        SMFIR_SKIP,
        SMFIR_PROGRESS,
        SMFIR_SHUTDOWN,
        SMFIR_CONN_FAIL,
    }
)


def parse_reply(cmd: bytes, data: bytes) -> Reply:
    """Check and decode one reply packet; MilterProtocolError when malformed."""
    if cmd in _EMPTY_REPLIES:
        return Reply(cmd)  # libmilter sends none; extra bytes are ignored, as Postfix
    if cmd in _STRING_REPLIES:
        return Reply(cmd, split_cstrings(data, _STRING_REPLIES[cmd]))
    if cmd in (SMFIR_ADDRCPT_PAR, SMFIR_CHGFROM):
        parts = split_cstrings(data)
        if not parts or len(parts) > 2:
            raise MilterProtocolError("expected an address and optional arguments")
        return Reply(cmd, parts)
    if cmd in (SMFIR_INSHEADER, SMFIR_CHGHEADER):
        if len(data) < 4:
            raise MilterProtocolError("input packet too short for network long")
        (index,) = LEN.unpack_from(data)
        return Reply(cmd, split_cstrings(data[4:], 2), index=index)
    if cmd == SMFIR_REPLBODY:
        return Reply(cmd, raw=data)
    raise MilterProtocolError(f"unexpected reply code {cmd!r}")


def parse_optneg(data: bytes) -> OptNeg:
    """The OPTNEG reply: version, actions, protocol, then SETSYMLIST entries."""
    if len(data) < 12:
        raise MilterProtocolError("OPTNEG reply too short")
    version, actions, protocol = struct.unpack_from("!III", data)
    symlists: dict[int, list[str]] = {}
    rest = data[12:]
    while rest:
        if len(rest) < 5:
            raise MilterProtocolError("truncated SETSYMLIST entry")
        (stage,) = LEN.unpack_from(rest)
        end = rest.find(b"\0", 4)
        if end < 0:
            raise MilterProtocolError("missing string null terminator")
        names = rest[4:end].decode("ascii", "replace").split()
        if stage > SMFIM_EOH:
            raise MilterProtocolError(f"bad SETSYMLIST stage {stage}")
        symlists[stage] = names
        rest = rest[end + 1 :]
    return OptNeg(version, actions, protocol, symlists)
