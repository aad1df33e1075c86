"""milter.message - a message held for the milters, and the edits they ask for

SYNOPSIS
    from mta.milter.message import MilterMessage
    msg = MilterMessage.parse(spool)              # a file positioned at the start
    for name, value in msg.headers: ...           # bytes; value as after the colon
    for chunk in msg.body_chunks(): ...           # CRLF line ends, <= 65535 bytes
    msg.apply(edits, leadspc, header_check)       # one milter's edits, in order
    msg.write_to(job.write)

DESCRIPTION
    The header section is split into fields (a line starting with a
    space or tab continues the one before; the first line that is no
    header ends the section) and held in memory, values with CRLF
    between their physical lines. The body stays in the spool file it
    came in and is read in chunks; a replacement body (SMFIR_REPLBODY)
    goes to a new spool file.

    Edits: SMFIR_ADDHEADER appends a field, SMFIR_INSHEADER inserts it
    at an index (0: first), SMFIR_CHGHEADER changes the nth field of a
    name (1: the first; case does not matter in the name), deletes it
    when the value is empty, and adds it when there is no such field.
    Without SMFIP_HDR_LEADSPC a value gets one space after the colon,
    as libmilter strips it when it sends one. show_own() puts the MTA's
    own Received: first, as Postfix's milters see it; the milters may
    change or delete it like any other, and own_result() takes it out
    again for cleanup to write on top. The envelope edits
    (sender, recipients, quarantine) are kept in EnvelopeEdits for the
    caller.

SECURITY
    Sees untrusted message content and what milters send; memory use is
    bounded by the header section (message_size_limit) and the spool
    files' in-memory threshold.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field

from mta.milter import protocol as P

SPOOL_MEMORY = 1 << 20  # bytes of a spooled body kept in memory before it goes to disk
READ_BLOCK = 1 << 16  # bytes of a spooled body read at once


def strip_brackets(addr: bytes) -> str:
    text = addr.decode("utf-8", "surrogateescape").strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    return text


def normalize_value(value: bytes, leadspc: bool) -> bytes:
    """A header value from a milter as stored: CRLF between lines, a leading space."""
    lines = value.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    value = b"\r\n".join(lines)
    if not leadspc and not value.startswith((b" ", b"\t")):
        value = b" " + value
    return value


@dataclass
class EnvelopeEdits:
    """What the milters asked of the envelope, in order."""

    sender: tuple[str, str] | None = None  # (address, ESMTP arguments)
    added: list[tuple[str, str]] = field(default_factory=list)  # (address, arguments)
    deleted: list[str] = field(default_factory=list)
    hold: str | None = None  # the quarantine reason


class MilterMessage:
    """See the module docstring."""

    def __init__(self, headers, body_file, body_offset: int, saw_blank: bool) -> None:
        self.headers: list[tuple[bytes, bytes]] = headers
        self.body_file = body_file
        self.body_offset = body_offset
        self.saw_blank = saw_blank
        self.envelope = EnvelopeEdits()
        self.replaced: list = []  # spool files of replacement bodies, closed at the end
        self.own: tuple[bytes, bytes] | None = None  # the MTA's own Received:, see show_own()
        self.own_shown = False

    @classmethod
    def parse(cls, spool) -> MilterMessage:
        headers: list[tuple[bytes, bytes]] = []
        spool.seek(0)
        saw_blank = False
        while True:
            start = spool.tell()
            line = spool.readline()
            if not line:
                break
            text = line.rstrip(b"\r\n")
            if not text:
                saw_blank = True
                start = spool.tell()
                break
            if text[:1] in (b" ", b"\t") and headers:
                name, value = headers[-1]
                headers[-1] = (name, value + b"\r\n" + text)
                continue
            name, colon, value = text.partition(b":")
            name = name.rstrip(b" \t")
            if not colon or not name or any(c <= 32 or c >= 127 for c in name):
                break  # not a header: the body starts here
            headers.append((name, value))
        return cls(headers, spool, start, saw_blank)

    def show_own(self, header: bytes) -> None:
        """Put the MTA's own header (cleanup's Received:, lines joined with "\\n") on
        top, where the milters see it first, as Postfix shows its own; own_result()
        then says what became of it."""
        name, _, value = header.partition(b":")
        self.own = (name, value.replace(b"\n", b"\r\n"))
        self.own_shown = True
        self.headers.insert(0, self.own)

    def own_result(self) -> bytes | None:
        """The own header as the milters left it (lines joined with "\\n"), or None when
        one deleted it; it leaves the header list (cleanup writes it on top)."""
        own = self.own
        if own is None:
            return None
        self.headers = [h for h in self.headers if h is not own]
        self.own = None
        return own[0] + b":" + own[1].replace(b"\r\n", b"\n")

    # ------------------------------------------------------------ reading
    def header_value(self, value: bytes, leadspc: bool) -> bytes:
        """A stored value as a milter sees it: LF between lines, a leading space only
        with SMFIP_HDR_LEADSPC."""
        value = value.replace(b"\r\n", b"\n")
        if not leadspc and value[:1] == b" ":
            value = value[1:]
        return value

    def body_chunks(self, size: int = P.MILTER_CHUNK_SIZE):
        """The body with CRLF line ends (a bare LF becomes CRLF, a bare CR stays), in
        chunks of at most size bytes."""
        self.body_file.seek(self.body_offset)
        out = bytearray()
        carry = b""  # a CR that ended the last block: its LF may start the next
        while True:
            block = self.body_file.read(READ_BLOCK)
            if not block:
                break
            data = carry + block
            carry = b""
            if data.endswith(b"\r"):
                carry, data = b"\r", data[:-1]
            if data.count(b"\n") != data.count(b"\r\n"):
                data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
            out += data
            while len(out) >= size:
                yield bytes(out[:size])
                del out[:size]
        out += carry
        while out:
            yield bytes(out[:size])
            del out[:size]

    def write_to(self, write) -> None:
        """The edited message, headers then body, into write()."""
        out = [name + b":" + value + b"\r\n" for name, value in self.headers]
        write(b"".join(out) + b"\r\n")
        for chunk in self.body_chunks(1 << 16):
            write(chunk)

    # ------------------------------------------------------------ edits
    def apply(self, edits: list[P.Reply], leadspc: bool, header_check=None) -> str | None:
        """Apply one milter's edits; header_check(name, value) may veto a header by
        returning None or give a replacement (name, value). Returns the quarantine
        reason when the milter asked for one."""
        body = None
        for edit in edits:
            cmd = edit.cmd
            if cmd == P.SMFIR_REPLBODY:
                if body is None:
                    body = tempfile.SpooledTemporaryFile(SPOOL_MEMORY)
                body.write(edit.raw)
                continue
            if cmd in (P.SMFIR_ADDHEADER, P.SMFIR_INSHEADER, P.SMFIR_CHGHEADER):
                name, value = edit.strings
                value = normalize_value(value, leadspc) if value else b""
                if value and header_check is not None:
                    checked = header_check(name, value)
                    if checked is None:
                        continue
                    name, value = checked
                self._edit_header(cmd, edit.index, name, value)
            elif cmd == P.SMFIR_ADDRCPT:
                self.envelope.added.append((strip_brackets(edit.strings[0]), ""))
            elif cmd == P.SMFIR_ADDRCPT_PAR:
                args = edit.strings[1] if len(edit.strings) > 1 else b""
                self.envelope.added.append(
                    (strip_brackets(edit.strings[0]), args.decode("utf-8", "replace"))
                )
            elif cmd == P.SMFIR_DELRCPT:
                self.envelope.deleted.append(strip_brackets(edit.strings[0]))
            elif cmd == P.SMFIR_CHGFROM:
                args = edit.strings[1] if len(edit.strings) > 1 else b""
                self.envelope.sender = (
                    strip_brackets(edit.strings[0]),
                    args.decode("utf-8", "replace"),
                )
            elif cmd == P.SMFIR_QUARANTINE:
                self.envelope.hold = edit.strings[0].decode("utf-8", "replace") or "milter"
        if body is not None:
            self.replaced.append(body)
            self.body_file, self.body_offset = body, 0
        return self.envelope.hold

    def _edit_header(self, cmd: bytes, index: int, name: bytes, value: bytes) -> None:
        if cmd == P.SMFIR_ADDHEADER:
            self.headers.append((name, value))
            return
        if cmd == P.SMFIR_INSHEADER:
            self.headers.insert(min(index, len(self.headers)), (name, value))
            return
        wanted = name.lower()
        seen = 0
        for pos, (have, _) in enumerate(self.headers):
            if have.lower() == wanted:
                seen += 1
                if seen == max(index, 1):
                    mine = self.headers[pos] is self.own
                    if value:
                        self.headers[pos] = (have, value)
                        if mine:
                            self.own = self.headers[pos]  # changed, still the MTA's
                    else:
                        del self.headers[pos]
                        if mine:
                            self.own = None  # deleted: no Received: of ours at all
                    return
        if value:
            self.headers.append((name, value))

    def close(self) -> None:
        for body in self.replaced:
            body.close()
        self.replaced.clear()
