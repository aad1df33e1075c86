# cython: language_level=3
"""smtpline - SMTP server wire kernels, compiled twin of smtpline_ref.py

Same API and results as smtpline_ref. split_lines() finds line ends with
memchr; DataStream.feed() runs the DATA transparency state machine over
the chunk with a char pointer and copies runs of ordinary bytes with one
memcpy each, so its cost is a few instructions per byte.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.string cimport memchr, memcpy

from mta._speedups.smtpline_ref import LineTooLong

cdef enum DataState:
    S_BOL = 0
    S_TEXT = 1
    S_CR = 2
    S_DOT = 3
    S_DOT_CR = 4
    S_END = 5


def split_lines(buf, Py_ssize_t limit):
    cdef const unsigned char[::1] view = buf
    cdef Py_ssize_t n = view.shape[0]
    cdef Py_ssize_t start = 0, end
    cdef const unsigned char *base
    cdef const unsigned char *hit
    cdef list lines = []
    cdef Py_ssize_t bare = -1
    if n == 0:
        return lines, 0, -1
    base = &view[0]
    while True:
        hit = <const unsigned char *>memchr(base + start, 10, n - start) if start < n else NULL
        if hit == NULL:
            if n - start > limit:
                raise LineTooLong(start, n - start)
            return lines, start, bare
        end = hit - base
        if end + 1 - start > limit:
            raise LineTooLong(start, end + 1 - start)
        if end > start and base[end - 1] == 13:
            lines.append(PyBytes_FromStringAndSize(<const char *>base + start, end - 1 - start))
        else:
            if bare < 0:
                bare = len(lines)
            lines.append(PyBytes_FromStringAndSize(<const char *>base + start, end - start))
        start = end + 1


cdef inline bint _blank(unsigned char c) noexcept nogil:
    return c == 32 or c == 9


def parse_command(line):
    cdef const unsigned char[::1] view = line
    cdef Py_ssize_t n = view.shape[0], a = 0, b, i
    cdef const char *p
    if n == 0:
        return b"", b""
    p = <const char *>&view[0]
    while a < n and _blank(p[a]):
        a += 1
    while n > a and _blank(p[n - 1]):
        n -= 1
    i = a
    while i < n and not _blank(p[i]):
        i += 1
    # A fresh object (NULL source): one-byte bytes made from a source are
    # shared singletons and must never be written to.
    verb = PyBytes_FromStringAndSize(NULL, i - a)
    cdef char *v = PyBytes_AS_STRING(verb)
    cdef char ch
    for b in range(i - a):
        ch = p[a + b]
        v[b] = ch - 32 if 97 <= ch <= 122 else ch
    while i < n and _blank(p[i]):
        i += 1
    return verb, PyBytes_FromStringAndSize(p + i, n - i)


def parse_esmtp_params(text):
    cdef list out = []
    for word in bytes(text).split():
        key, eq, value = word.partition(b"=")
        out.append((key.upper(), value if eq else None))
    return out


cdef class DataStream:
    cdef public Py_ssize_t max_size
    cdef public int state
    cdef public Py_ssize_t size
    cdef public Py_ssize_t bare_lf
    cdef public bint too_big

    def __init__(self, Py_ssize_t max_size=0):
        self.max_size = max_size
        self.state = S_BOL
        self.size = 0
        self.bare_lf = 0
        self.too_big = False

    def feed(self, data):
        cdef const unsigned char[::1] view = data
        cdef Py_ssize_t n = view.shape[0]
        cdef Py_ssize_t i = 0, o = 0, run
        cdef const unsigned char *p
        cdef unsigned char *w
        cdef unsigned char c
        cdef int state = self.state
        if state == S_END:
            return b"", 0, True
        if n == 0:
            return b"", 0, False
        p = &view[0]
        # one byte more: a CR held back at the end of the last chunk comes out here
        out = PyBytes_FromStringAndSize(NULL, n + 1)
        w = <unsigned char *>PyBytes_AS_STRING(out)
        while i < n:
            if state == S_TEXT:
                # copy a run of ordinary bytes in one go
                run = i
                while run < n and p[run] != 13 and p[run] != 10:
                    run += 1
                if run > i:
                    memcpy(w + o, p + i, run - i)
                    o += run - i
                    i = run
                    continue
            c = p[i]
            i += 1
            if state == S_DOT_CR:
                if c == 10:
                    state = S_END
                    break
                w[o] = 13
                o += 1
                state = S_CR
            elif state == S_DOT:
                if c == 13:
                    state = S_DOT_CR
                    continue
                state = S_TEXT
            elif state == S_BOL and c == 46:
                state = S_DOT
                continue
            w[o] = c
            o += 1
            if c == 13:
                state = S_CR
            elif c == 10:
                if state == S_CR:
                    state = S_BOL
                else:
                    self.bare_lf += 1
                    state = S_TEXT
            else:
                state = S_TEXT
        self.state = state
        # content beyond max_size is dropped, as the reference drops it byte by byte
        if self.too_big:
            self.size += o
            return b"", i, state == S_END
        if self.max_size and self.size + o > self.max_size:
            keep = self.max_size - self.size
            self.too_big = True
            self.size += o
            return out[:keep], i, state == S_END
        self.size += o
        return out[:o], i, state == S_END
