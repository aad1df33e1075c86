# cython: language_level=3
"""record - queue file records, compiled twin of record_ref.py

Same API and results as record_ref: encode_length, encode_record,
decode_records, content_text, scan_envelope and ContentEncoder. The content
encoder scans each chunk with memchr for line ends and writes records straight
into one output bytearray, so a message costs a few calls per chunk, not per
line. scan_envelope walks the records in C and makes Python objects only for
the sender and the recipients not done.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE, PyByteArray_Resize
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.string cimport memchr, memcpy

from mta._speedups.record_ref import RecordError

REC_TYPE_NORM = 0x4E
REC_TYPE_CONT = 0x4C
MAX_LENGTH_BYTES = 5
MAX_RECORD = 1 << 30
MAX_DIGITS = 15

cdef enum:
    C_NORM = 0x4E
    C_CONT = 0x4C
    C_MESG = 0x4D
    C_XTRA = 0x58
    C_SIZE = 0x43
    C_TIME = 0x54
    C_ATTR = 0x41
    C_FULL = 0x46
    C_FROM = 0x53
    C_ORCP = 0x4F
    C_DSN_ORCPT = 0x6F
    C_DSN_NOTIFY = 0x6E
    C_RCPT = 0x52
    C_DONE = 0x44
    C_WARN = 0x57
    C_END = 0x45

cdef enum ScanSection:
    S_ENVELOPE = 0
    S_CONTENT          # between M and X
    S_EXTRA            # after X


cdef inline Py_ssize_t _put_record(bytearray out, int rtype, const unsigned char *p,
                                   Py_ssize_t n) except -1:
    """Append one record to out; return its encoded size."""
    cdef Py_ssize_t old = PyByteArray_GET_SIZE(out)
    cdef Py_ssize_t size = n
    cdef int lbytes = 1
    while size >= 0x80:
        size >>= 7
        lbytes += 1
    PyByteArray_Resize(out, old + 1 + lbytes + n)
    cdef unsigned char *w = <unsigned char *>PyByteArray_AS_STRING(out) + old
    w[0] = <unsigned char>rtype
    w += 1
    size = n
    while size >= 0x80:
        w[0] = <unsigned char>((size & 0x7F) | 0x80)
        size >>= 7
        w += 1
    w[0] = <unsigned char>size
    w += 1
    if n:
        memcpy(w, p, n)
    return 1 + lbytes + n


def encode_length(Py_ssize_t n):
    cdef bytearray out = bytearray()
    while True:
        if n >= 0x80:
            out.append((n & 0x7F) | 0x80)
            n >>= 7
        else:
            out.append(n)
            return bytes(out)


def encode_record(int rtype, payload):
    cdef const unsigned char[::1] view = payload
    cdef bytearray out = bytearray()
    if view.shape[0]:
        _put_record(out, rtype, &view[0], view.shape[0])
    else:
        _put_record(out, rtype, NULL, 0)
    return bytes(out)


cdef Py_ssize_t _record_at(const unsigned char *p, Py_ssize_t pos, Py_ssize_t n,
                           bint final, Py_ssize_t *payload) except -2:
    """Parse the record at pos: its payload offset into payload, its length returned.

    -1: the record runs past n and final is false (more bytes may come)."""
    cdef Py_ssize_t i = pos + 1, length = 0
    cdef int shift = 0
    cdef unsigned char byte
    while True:
        if i >= n:
            if not final:
                return -1
            raise RecordError(f"truncated record length at offset {pos}")
        byte = p[i]
        i += 1
        length |= (<Py_ssize_t>(byte & 0x7F)) << shift
        if not byte & 0x80:
            break
        shift += 7
        if shift >= 7 * MAX_LENGTH_BYTES:
            raise RecordError(f"bad record length at offset {pos}")
    if length > MAX_RECORD:
        raise RecordError(f"record too large ({length} bytes) at offset {pos}")
    if i + length > n:
        if not final:
            return -1
        raise RecordError(f"truncated record at offset {pos}")
    payload[0] = i
    return length


def decode_records(buf, Py_ssize_t start=0, bint final=False, bint skip_content=False):
    cdef const unsigned char[::1] view = buf
    cdef Py_ssize_t n = view.shape[0]
    cdef Py_ssize_t pos = start, at, length
    cdef unsigned char rtype
    cdef list records = []
    if pos < 0:
        raise ValueError("negative start")
    if pos >= n:
        return records, pos
    cdef const unsigned char *p = &view[0]
    while pos < n:
        rtype = p[pos]
        length = _record_at(p, pos, n, final, &at)
        if length < 0:
            return records, pos
        if not (skip_content and (rtype == C_NORM or rtype == C_CONT)):
            records.append((pos, rtype, bytes(view[at:at + length])))
        pos = at + length
    return records, pos


cdef class ContentEncoder:
    cdef readonly Py_ssize_t limit
    cdef bytearray partial

    def __init__(self, Py_ssize_t limit):
        if limit < 1:
            raise ValueError("line limit must be positive")
        self.limit = limit
        self.partial = bytearray()

    cdef int _line(self, bytearray out, const unsigned char *p, Py_ssize_t n,
                   bint strip_cr=True) except -1:
        """Write one complete line (without its LF) as L pieces and an N."""
        if strip_cr and n and p[n - 1] == 13:
            n -= 1
        while n > self.limit:
            _put_record(out, C_CONT, p, self.limit)
            p += self.limit
            n -= self.limit
        _put_record(out, C_NORM, p, n)
        return 0

    def feed(self, data):
        cdef const unsigned char[::1] view = data
        cdef Py_ssize_t n = view.shape[0]
        cdef Py_ssize_t pos = 0, end, keep
        cdef const unsigned char *base
        cdef const unsigned char *nl
        cdef bytearray out = bytearray()
        cdef bytearray partial = self.partial
        cdef bytes joined
        if n == 0:
            return b""
        base = &view[0]
        while pos < n:
            nl = <const unsigned char *>memchr(base + pos, 10, n - pos)
            if nl == NULL:
                partial += view[pos:n]
                pos = n
                keep = PyByteArray_GET_SIZE(partial)
                if keep and (<unsigned char *>PyByteArray_AS_STRING(partial))[keep - 1] == 13:
                    keep -= 1
                if keep > self.limit:
                    self._cut(out, partial)
                break
            end = nl - base
            if PyByteArray_GET_SIZE(partial):
                partial += view[pos:end]
                joined = bytes(partial)
                partial.clear()
                self._line(out, <const unsigned char *><char *>joined, len(joined))
            else:
                self._line(out, base + pos, end - pos)
            pos = end + 1
        return bytes(out)

    cdef int _cut(self, bytearray out, bytearray partial) except -1:
        cdef Py_ssize_t n = PyByteArray_GET_SIZE(partial)
        cdef const unsigned char *p = <const unsigned char *>PyByteArray_AS_STRING(partial)
        cdef Py_ssize_t done = 0
        while n - done - (p[n - 1] == 13) > self.limit:
            _put_record(out, C_CONT, p + done, self.limit)
            p = <const unsigned char *>PyByteArray_AS_STRING(partial)
            done += self.limit
        del partial[:done]
        return 0

    def flush(self):
        if not PyByteArray_GET_SIZE(self.partial):
            return b""
        cdef bytearray out = bytearray()
        cdef bytes rest = bytes(self.partial)
        self.partial = bytearray()
        self._line(out, <const unsigned char *><char *>rest, len(rest), False)
        return bytes(out)


def content_text(buf, Py_ssize_t start=0, bytes line_end=b"\n"):
    cdef const unsigned char[::1] view = buf
    cdef Py_ssize_t n = view.shape[0]
    if start < 0:
        raise ValueError("negative start")
    if start >= n:
        return b"", 0
    cdef const unsigned char *p = &view[0]
    cdef Py_ssize_t pos, at, length, total = 0, line = 0, longest = 0, lines = 0
    cdef Py_ssize_t ends = len(line_end)
    cdef Py_ssize_t body_start = -1, body_end = -1
    cdef bint in_body = False
    cdef unsigned char rtype
    # pass 1: check every record, find the content and measure its lines
    pos = start
    while pos < n:
        rtype = p[pos]
        length = _record_at(p, pos, n, True, &at)
        if not in_body:
            if rtype == C_MESG and body_start < 0:
                body_start = body_end = at + length
                in_body = True
        elif rtype == C_CONT:
            line += length
        elif rtype == C_NORM:
            line += length
            total += line
            lines += 1
            if line > longest:
                longest = line
            line = 0
            body_end = at + length  # L pieces after the last N are dropped
        elif rtype == C_XTRA:
            in_body = False
        pos = at + length
    if lines == 0:
        return b"", 0
    cdef bytes out = PyBytes_FromStringAndSize(NULL, total + lines * ends)
    cdef char *w = PyBytes_AS_STRING(out)
    cdef const char *e = PyBytes_AS_STRING(line_end)
    # pass 2: copy the lines, each with its line end
    pos = body_start
    while pos < body_end:
        rtype = p[pos]
        length = _record_at(p, pos, n, True, &at)
        if rtype == C_CONT or rtype == C_NORM:
            if length:
                memcpy(w, p + at, length)
                w += length
            if rtype == C_NORM and ends:
                memcpy(w, e, ends)
                w += ends
        pos = at + length
    return out, longest


cdef int _numbers(const unsigned char *p, Py_ssize_t n, long long *out, int count) noexcept:
    """Parse count blank-separated numbers (ASCII digits, at most MAX_DIGITS each)
    into out; 0 when payload is just that, -1 otherwise."""
    cdef Py_ssize_t i = 0
    cdef int k = 0, digits
    cdef long long value
    while True:
        while i < n and p[i] == 32:
            i += 1
        if i == n:
            break
        value = 0
        digits = 0
        while i < n and 48 <= p[i] <= 57:
            value = value * 10 + (p[i] - 48)
            digits += 1
            i += 1
            if digits > 15:
                return -1
        if digits == 0 or k == count:
            return -1
        out[k] = value
        k += 1
    return 0 if k == count else -1


def scan_envelope(buf, bint whole=True):
    cdef const unsigned char[::1] view = buf
    cdef Py_ssize_t n = view.shape[0]
    if n == 0:
        return None
    cdef const unsigned char *p = &view[0]
    if p[0] != C_SIZE:
        return None
    cdef Py_ssize_t pos = 0, at = 0, length, following, i
    cdef Py_ssize_t sender_at = 0, sender_len = 0, seen = 0
    cdef long long sizes[4]
    cdef long long when[2]
    cdef long long arrival = 0
    cdef unsigned char rtype
    cdef ScanSection section = S_ENVELOPE
    cdef list pending = []
    while True:
        if pos >= n:
            return None  # no end record, or (first piece) no content yet
        rtype = p[pos]
        try:
            length = _record_at(p, pos, n, whole, &at)
        except RecordError:
            return None
        if length < 0:
            return None
        following = at + length
        if pos == 0:
            if _numbers(p + at, length, sizes, 4) < 0:
                return None
        elif rtype == C_NORM or rtype == C_CONT:
            pass  # content, wherever it is
        elif section == S_CONTENT:
            if rtype != C_XTRA:
                return None
            section = S_EXTRA
        elif rtype == C_RCPT:
            seen += 1
            pending.append(
                (pos, PyUnicode_DecodeUTF8(<const char *>p + at, length, "surrogateescape"))
            )
        elif rtype == C_DONE:
            seen += 1
        elif rtype == C_ORCP or rtype == C_DSN_ORCPT:
            pass
        elif rtype == C_DSN_NOTIFY:
            if length == 0:
                return None
            for i in range(at, following):
                if not 48 <= p[i] <= 57:
                    return None
        elif rtype == C_WARN:
            if length and _numbers(p + at, length, when, 1) < 0:
                return None
        elif rtype == C_ATTR:
            if length == 0 or memchr(p + at, 61, length) == NULL:
                return None
        elif rtype == C_END:
            if not whole or following != n or section != S_EXTRA:
                return None
            break
        elif section != S_ENVELOPE:
            return None
        elif rtype == C_TIME:
            if _numbers(p + at, length, when, 2) < 0:
                return None
            # as Python computes int(sec + usec / 1_000_000): both below 2**53
            arrival = <long long>(<double>when[0] + <double>when[1] / 1e6)
        elif rtype == C_FULL:
            pass
        elif rtype == C_FROM:
            sender_at = at
            sender_len = length
        elif rtype == C_MESG:
            if pos != sizes[0]:
                return None
            section = S_CONTENT
            if not whole:
                break
        else:
            return None
        pos = following
    sender = PyUnicode_DecodeUTF8(<const char *>p + sender_at, sender_len, "surrogateescape")
    return (arrival, sizes[1], sizes[2], seen, sender, pending)
