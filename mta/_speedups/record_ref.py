"""record_ref - queue file records, reference version; the spec for record.pyx

SYNOPSIS
    from mta._speedups.record_ref import (
        RecordError, encode_record, decode_records, ContentEncoder)
    data = encode_record(ord("S"), b"sender@example.org")
    records, used = decode_records(buf, 0, final=True)   # [(offset, type, payload)]
    enc = ContentEncoder(2048)
    out = enc.feed(b"Subject: hi\r\nbody line") + enc.flush()
    summary = scan_envelope(file_bytes, whole=True)      # or None: ask the full parser

DESCRIPTION
    A queue file is a sequence of records. Each record is one type byte,
    the payload length as a base-128 number (seven bits per byte, low
    bits first, high bit set on every byte but the last, at most five
    bytes), then the payload. One record type byte can be overwritten in
    place, which is how a recipient is marked done.

    content_text() rebuilds the message content from a queue file's
    records, with the given line end after every line.

    decode_records() parses every complete record in buf from start and
    returns them with the number of bytes consumed; with final=True an
    incomplete record at the end is an error instead of left over.

    ContentEncoder turns message content (lines ending in LF or CRLF, in
    chunks cut anywhere) into records: a whole line becomes one "N"
    record without its line end; a line longer than the limit is cut
    into "L" records (more of this line follows) ending with an "N".
    Content that does not end in a line end gets its last piece as an
    "N" record at flush(), so a trailing partial line is not lost.

    scan_envelope() is the queue listing's reader: from a queue file, or
    from its first piece (whole=False), it returns
    (arrival, content_size, nrcpt, seen, sender, pending): the arrival
    time in whole seconds, the content size and recipient count from the
    size record, how many recipient records it saw (R and D), the sender,
    and [(offset, address)] of the recipients not done (R), in file order.
    It accepts only a plain, well-formed file, the way the writer makes
    it: a size record of four blank-separated numbers first, the
    envelope (T with two numbers, A with "=", F, S, O, o, n with digits,
    W empty or a number, R, D), the M record where the size record says,
    content (N, L), X, the extracted section (R, D, O, o, n, A, W), and E
    as the very last record; numbers are ASCII digits and blanks, at most
    15 digits each. Content records are passed over wherever they are.
    Anything else gives None, and the caller asks the full parser, which
    says what is wrong (or accepts a file the scan found unusual). With
    whole=False the scan stops after the M record, and gives None when
    buf ends before it; the content and the extracted section are then
    not looked at (see seen and nrcpt).

SECURITY
    Parses queue files, which only mail system programs write; a damaged
    file must raise RecordError, never crash or loop.
"""

REC_TYPE_SIZE = 0x43  # "C": content offset, content size, recipients, flags
REC_TYPE_TIME = 0x54  # "T": arrival time, "seconds microseconds"
REC_TYPE_ATTR = 0x41  # "A": an attribute, "name=value"
REC_TYPE_FULL = 0x46  # "F": the sender's full name
REC_TYPE_FROM = 0x53  # "S": the envelope sender
REC_TYPE_ORCP = 0x4F  # "O": the next recipient as first received
REC_TYPE_DSN_ORCPT = 0x6F  # "o": DSN ORCPT of the next recipient
REC_TYPE_DSN_NOTIFY = 0x6E  # "n": DSN NOTIFY bits of the next recipient, decimal
REC_TYPE_RCPT = 0x52  # "R": a recipient still to deliver
REC_TYPE_DONE = 0x44  # "D": a recipient finished
REC_TYPE_WARN = 0x57  # "W": when the delay warning is due
REC_TYPE_END = 0x45  # "E": the end of the file
REC_TYPE_NORM = 0x4E  # "N": a content line, complete
REC_TYPE_CONT = 0x4C  # "L": a piece of a content line, more follows
REC_TYPE_MESG = 0x4D  # "M": the content starts after this record
REC_TYPE_XTRA = 0x58  # "X": the content ended before this record
MAX_LENGTH_BYTES = 5  # a length takes at most 5 bytes (35 bits)
MAX_RECORD = 1 << 30  # no record is larger than 1 GiB
MAX_DIGITS = 15  # scan_envelope() leaves longer numbers to the full parser


class RecordError(ValueError):
    """A malformed record; shared by both implementations."""


def encode_length(n):
    """Return the base-128 encoding of n."""
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode_record(rtype, payload):
    """Return one record of type rtype (an int) with payload (bytes)."""
    return bytes((rtype,)) + encode_length(len(payload)) + bytes(payload)


def decode_records(buf, start=0, final=False, skip_content=False):
    """Return ([(offset, type, payload), ...], end offset of the last whole record).

    With skip_content, content records (N and L) are checked but not returned."""
    records = []
    pos = start
    n = len(buf)
    while pos < n:
        rtype = buf[pos]
        found = _record_at(buf, pos, final)
        if found is None:
            return records, pos
        i, length = found
        if not (skip_content and (rtype == REC_TYPE_NORM or rtype == REC_TYPE_CONT)):
            records.append((pos, rtype, bytes(buf[i : i + length])))
        pos = i + length
    return records, pos


def content_text(buf, start=0, line_end=b"\n"):
    """Return (the content lines, each followed by line_end; the longest line's length).

    The content is what the N and L records after the first M record at or
    after start hold, up to the X record; other records are passed over, and
    L pieces that no N record completes are dropped."""
    records, _ = decode_records(buf, start, True)
    lines = []
    pieces = []
    seen_mesg = False
    for _, rtype, payload in records:
        if rtype == REC_TYPE_MESG:
            seen_mesg = True
        elif not seen_mesg:
            continue
        elif rtype == REC_TYPE_CONT:
            pieces.append(payload)
        elif rtype == REC_TYPE_NORM:
            lines.append(b"".join(pieces) + payload)
            pieces = []
        elif rtype == REC_TYPE_XTRA:
            break
    longest = max((len(line) for line in lines), default=0)
    return b"".join(line + line_end for line in lines), longest


class ContentEncoder:
    """Turn message content into N and L records; see the module docstring."""

    def __init__(self, limit):
        if limit < 1:
            raise ValueError("line limit must be positive")
        self.limit = limit
        self.partial = bytearray()  # the current line so far, not yet written

    def feed(self, data):
        out = bytearray()
        data = bytes(data)
        limit = self.limit
        partial = self.partial
        pos = 0
        n = len(data)
        while pos < n:
            nl = data.find(b"\n", pos)
            if nl < 0:
                partial += data[pos:]
                pos = n
                # Cut a long line, but keep a final CR back: it may be the
                # first half of a CRLF that the next chunk completes.
                while len(partial) - partial.endswith(b"\r") > limit:
                    out += encode_record(REC_TYPE_CONT, partial[:limit])
                    del partial[:limit]
            else:
                partial += data[pos:nl]
                pos = nl + 1
                if partial.endswith(b"\r"):
                    del partial[-1]
                while len(partial) > limit:
                    out += encode_record(REC_TYPE_CONT, partial[:limit])
                    del partial[:limit]
                out += encode_record(REC_TYPE_NORM, partial)
                partial.clear()
        return bytes(out)

    def flush(self):
        """Return records for a final line without a line end, if any."""
        partial = self.partial
        if not partial:
            return b""
        out = bytearray()
        while len(partial) > self.limit:
            out += encode_record(REC_TYPE_CONT, partial[: self.limit])
            del partial[: self.limit]
        out += encode_record(REC_TYPE_NORM, partial)
        self.partial = bytearray()
        return bytes(out)


def _record_at(buf, pos, final):
    """(payload offset, payload length) of the record at pos; None when it runs
    past the end of buf and final is false. RecordError when malformed."""
    n = len(buf)
    i = pos + 1
    length = 0
    shift = 0
    while True:
        if i >= n:
            if final:
                raise RecordError(f"truncated record length at offset {pos}")
            return None
        byte = buf[i]
        i += 1
        length |= (byte & 0x7F) << shift
        if not byte & 0x80:
            break
        shift += 7
        if shift >= 7 * MAX_LENGTH_BYTES:
            raise RecordError(f"bad record length at offset {pos}")
    if length > MAX_RECORD:
        raise RecordError(f"record too large ({length} bytes) at offset {pos}")
    if i + length > len(buf):
        if final:
            raise RecordError(f"truncated record at offset {pos}")
        return None
    return i, length


def _numbers(payload, count):
    """count numbers, ASCII digits separated (and maybe led and followed) by blanks;
    None when payload is anything else or a number has more than MAX_DIGITS digits."""
    fields = payload.split(b" ")
    out = [int(f) for f in fields if f.isdigit() and len(f) <= MAX_DIGITS]
    if len(out) != count or len(out) != sum(1 for f in fields if f):
        return None
    return out


_ENVELOPE, _CONTENT, _EXTRA = range(3)
_ANY_SECTION = (REC_TYPE_ORCP, REC_TYPE_DSN_ORCPT)


def scan_envelope(buf, whole=True):
    """The listing's view of a queue file, or None; see the module docstring."""
    buf = bytes(buf)
    n = len(buf)
    if n == 0 or buf[0] != REC_TYPE_SIZE:
        return None
    pos = 0
    section = _ENVELOPE
    content_offset = content_size = nrcpt = -1
    arrival = 0
    seen = 0
    sender = b""
    pending = []
    while True:
        if pos >= n:
            return None  # no end record, or (first piece) no content yet
        rtype = buf[pos]
        try:
            found = _record_at(buf, pos, whole)
        except RecordError:
            return None
        if found is None:
            return None
        at, length = found
        payload = buf[at : at + length]
        following = at + length
        if pos == 0:
            sizes = _numbers(payload, 4)
            if sizes is None:
                return None
            content_offset, content_size, nrcpt, _ = sizes
        elif rtype in (REC_TYPE_NORM, REC_TYPE_CONT):
            pass  # content, wherever it is
        elif section == _CONTENT:
            if rtype != REC_TYPE_XTRA:
                return None
            section = _EXTRA
        elif rtype == REC_TYPE_RCPT:
            seen += 1
            pending.append((pos, payload.decode("utf-8", "surrogateescape")))
        elif rtype == REC_TYPE_DONE:
            seen += 1
        elif rtype in _ANY_SECTION:
            pass
        elif rtype == REC_TYPE_DSN_NOTIFY:
            if not payload.isdigit():
                return None
        elif rtype == REC_TYPE_WARN:
            if payload and _numbers(payload, 1) is None:
                return None
        elif rtype == REC_TYPE_ATTR:
            if b"=" not in payload:
                return None
        elif rtype == REC_TYPE_END:
            if not whole or following != n or section != _EXTRA:
                return None
            break
        elif section != _ENVELOPE:
            return None
        elif rtype == REC_TYPE_TIME:
            when = _numbers(payload, 2)
            if when is None:
                return None
            arrival = int(when[0] + when[1] / 1_000_000)
        elif rtype == REC_TYPE_FULL:
            pass
        elif rtype == REC_TYPE_FROM:
            sender = payload
        elif rtype == REC_TYPE_MESG:
            if pos != content_offset:
                return None
            section = _CONTENT
            if not whole:
                break
        else:
            return None
        pos = following
    return (
        arrival,
        content_size,
        nrcpt,
        seen,
        sender.decode("utf-8", "surrogateescape"),
        pending,
    )
