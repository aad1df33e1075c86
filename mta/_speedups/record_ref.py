"""record_ref - queue file records, reference version; the spec for record.pyx

SYNOPSIS
    from mta._speedups.record_ref import (
        RecordError, encode_record, decode_records, ContentEncoder)
    data = encode_record(ord("S"), b"sender@example.org")
    records, used = decode_records(buf, 0, final=True)   # [(offset, type, payload)]
    enc = ContentEncoder(2048)
    out = enc.feed(b"Subject: hi\r\nbody line") + enc.flush()

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

SECURITY
    Parses queue files, which only mail system programs write; a damaged
    file must raise RecordError, never crash or loop.
"""

REC_TYPE_NORM = 0x4E  # "N": a content line, complete
REC_TYPE_CONT = 0x4C  # "L": a piece of a content line, more follows
REC_TYPE_MESG = 0x4D  # "M": the content starts after this record
REC_TYPE_XTRA = 0x58  # "X": the content ended before this record
MAX_LENGTH_BYTES = 5  # a length takes at most 5 bytes (35 bits)
MAX_RECORD = 1 << 30  # no record is larger than 1 GiB


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
        i = pos + 1
        length = 0
        shift = 0
        while True:
            if i >= n:
                if final:
                    raise RecordError(f"truncated record length at offset {pos}")
                return records, pos
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
        if i + length > n:
            if final:
                raise RecordError(f"truncated record at offset {pos}")
            return records, pos
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
