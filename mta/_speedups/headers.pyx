# cython: language_level=3
"""headers - message header kernels, compiled twin of headers_ref.py

Same API and results as headers_ref. HeaderParser.feed() finds line ends
with memchr and appends whole lines to the pending header, so its cost
is a few calls per line, not per byte; is_header(), unfold() and fold()
walk a char pointer.
"""

from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.string cimport memchr

from mta._speedups.headers_ref import HEADER_NAMES, HDR_OTHER


cdef Py_ssize_t _is_header(const unsigned char *p, Py_ssize_t n) noexcept:
    cdef Py_ssize_t i = 0, j
    cdef unsigned char c
    while i < n:
        c = p[i]
        if c == 0x3A or c <= 32 or c >= 127:
            break
        i += 1
    if i == 0:
        return 0
    j = i
    while j < n and (p[j] == 32 or p[j] == 9):
        j += 1
    if j < n and p[j] == 0x3A:
        return i
    return 0


def header_id(name):
    return HEADER_NAMES.get(bytes(name), HDR_OTHER)


def is_header(line):
    cdef const unsigned char[::1] view = line
    if view.shape[0] == 0:
        return 0
    return _is_header(&view[0], view.shape[0])


def unfold(raw):
    cdef bytes data = bytes(raw)
    cdef const unsigned char *p = data
    cdef Py_ssize_t n = len(data), i, k = 0
    if memchr(p, 10, n) == NULL and memchr(p, 13, n) == NULL:
        return data
    out = PyBytes_FromStringAndSize(NULL, n)
    cdef unsigned char *o = <unsigned char *>(<char *>out)
    i = 0
    while i < n:
        if p[i] == 13 and i + 1 < n and p[i + 1] == 10:
            i += 2
            continue
        if p[i] == 10:
            i += 1
            continue
        o[k] = p[i]
        k += 1
        i += 1
    return out[:k]


def fold(name, value, Py_ssize_t width=78):
    cdef bytes text = bytes(name) + b": " + bytes(value)
    cdef const unsigned char *p = text
    cdef Py_ssize_t n = len(text), i = 0, line_start = 0, last_blank = -1
    cdef Py_ssize_t head = len(name) + 2
    cdef unsigned char c
    if n <= width:
        return text
    out = bytearray()
    while i < n:
        c = p[i]
        if (c == 32 or c == 9) and i > head:
            last_blank = i
        if i - line_start >= width and last_blank > line_start:
            out += text[line_start:last_blank]
            out += b"\n"
            line_start = last_blank
            last_blank = -1
            continue
        i += 1
    out += text[line_start:]
    return bytes(out)


cdef class HeaderParser:
    cdef public Py_ssize_t limit
    cdef public bint done
    cdef public bint blank
    cdef public Py_ssize_t truncated
    cdef public bytes rest
    cdef bytearray _partial
    cdef bytes _name
    cdef bytearray _raw
    cdef bint _full
    cdef bint _have

    def __init__(self, Py_ssize_t limit=102400):
        self.limit = limit
        self.done = False
        self.blank = False
        self.truncated = 0
        self.rest = b""
        self._partial = bytearray()
        self._name = b""
        self._raw = bytearray()
        self._full = False
        self._have = False

    cdef inline void _emit(self, list out):
        if self._have:
            out.append((self._name, bytes(self._raw), HEADER_NAMES.get(self._name, HDR_OTHER)))
            self._have = False
            self._raw = bytearray()

    cdef inline void _append(self, bytes text, Py_ssize_t a, Py_ssize_t b):
        cdef Py_ssize_t room
        if self._full:
            return
        room = self.limit - len(self._raw)
        if b - a > room:
            if room > 0:
                self._raw += text[a:a + room]
            self._full = True
            self.truncated += 1
        else:
            self._raw += text[a:b]

    cdef bint _line(self, bytes text, Py_ssize_t a, Py_ssize_t b, list out):
        """Take text[a:b] as one line; True when it ended the header section."""
        cdef const unsigned char *p = text
        cdef Py_ssize_t namelen
        if b > a and (p[a] == 32 or p[a] == 9) and self._have:
            self._append(b"\n", 0, 1)
            self._append(text, a, b)
            return False
        self._emit(out)
        if b == a:
            self.done = True
            self.blank = True
            return True
        namelen = _is_header(p + a, b - a)
        if namelen == 0:
            self.done = True
            return True
        self._name = text[a:a + namelen].lower()
        self._have = True
        self._full = False
        self._append(text, a, b)
        return False

    def feed_line(self, line):
        cdef list out = []
        cdef bytes text = bytes(line)
        if self.done:
            raise ValueError("header section already ended")
        if self._line(text, 0, len(text), out) and not self.blank:
            self.rest = text
        return out

    def feed(self, data):
        cdef list out = []
        cdef bytes text = bytes(data)
        cdef const unsigned char *p = text
        cdef Py_ssize_t n = len(text), start = 0, end, lend
        cdef const unsigned char *hit
        cdef bytes whole
        if self.done:
            raise ValueError("header section already ended")
        while start < n:
            hit = <const unsigned char *>memchr(p + start, 10, n - start)
            if hit == NULL:
                self._partial += text[start:]
                break
            end = hit - p
            if len(self._partial):
                whole = bytes(self._partial) + text[start:end]
                self._partial = bytearray()
                lend = len(whole)
                if lend and (<const unsigned char *>whole)[lend - 1] == 13:
                    lend -= 1
                if self._line(whole, 0, lend, out):
                    if self.blank:
                        self.rest = text[end + 1:]
                    else:
                        self.rest = whole + b"\n" + text[end + 1:]
                    return out
            else:
                lend = end
                if lend > start and p[lend - 1] == 13:
                    lend -= 1
                if self._line(text, start, lend, out):
                    self.rest = text[end + 1:] if self.blank else text[start:]
                    return out
            start = end + 1
        return out

    def finish(self):
        cdef list out = []
        cdef bytes whole
        cdef Py_ssize_t lend
        if self.done:
            return out
        if len(self._partial):
            whole = bytes(self._partial)
            self._partial = bytearray()
            lend = len(whole)
            if (<const unsigned char *>whole)[lend - 1] == 13:
                lend -= 1
            if self._line(whole, 0, lend, out):
                if not self.blank:
                    self.rest = whole
                return out
        self._emit(out)
        self.done = True
        return out
