# cython: language_level=3
"""smtpreply - SMTP client reply parser, compiled twin of smtpreply_ref.py

Same API and results as smtpreply_ref. feed() finds line ends with
memchr and checks each line's code with a few byte compares; only the
bytes of complete lines are copied, once each.
"""

from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.string cimport memchr

from mta._speedups.smtpreply_ref import REPLY_LINE_LIMIT, REPLY_MAX_LINES, ReplyError


cdef inline bint _digit(unsigned char c) noexcept nogil:
    return 48 <= c <= 57


cdef str _enhanced(int code, const unsigned char *p, Py_ssize_t n):
    cdef int klass = code // 100
    cdef Py_ssize_t i = 2, start
    cdef int part
    if (klass != 2 and klass != 4 and klass != 5) or n < 5 or p[0] != 48 + klass or p[1] != 46:
        return ""
    for part in range(2):
        start = i
        while i < n and _digit(p[i]) and i - start < 4:
            i += 1
        if not (1 <= i - start <= 3):
            return ""
        if part == 0:
            if i >= n or p[i] != 46:
                return ""
            i += 1
    if i < n and p[i] != 32 and p[i] != 9:
        return ""
    return (<bytes>PyBytes_FromStringAndSize(<const char *>p, i)).decode("ascii")


def find_enhanced(int code, text):
    cdef const unsigned char[::1] view = text
    if view.shape[0] == 0:
        return ""
    return _enhanced(code, &view[0], view.shape[0])


cdef class ReplyParser:
    cdef public Py_ssize_t line_limit
    cdef public Py_ssize_t max_lines
    cdef bytes _buf
    cdef int _code
    cdef list _lines
    cdef str _enh

    def __init__(self, Py_ssize_t line_limit=REPLY_LINE_LIMIT, Py_ssize_t max_lines=REPLY_MAX_LINES):
        self.line_limit = line_limit
        self.max_lines = max_lines
        self._buf = b""
        self._code = 0
        self._lines = []
        self._enh = ""

    def pending(self):
        return len(self._buf) > 0 or self._code != 0

    def feed(self, data):
        cdef bytes buf
        if self._buf:
            buf = self._buf + bytes(data)
        else:
            buf = bytes(data)
        cdef Py_ssize_t n = len(buf), start = 0, end, stop
        cdef const unsigned char *base = <const unsigned char *><const char *>buf
        cdef const unsigned char *hit
        cdef list out = []
        while True:
            hit = <const unsigned char *>memchr(base + start, 10, n - start) if start < n else NULL
            if hit == NULL:
                if n - start > self.line_limit:
                    raise ReplyError("reply line too long")
                break
            end = hit - base
            stop = end - 1 if end > start and base[end - 1] == 13 else end
            if stop - start > self.line_limit:
                raise ReplyError("reply line too long")
            self._line(base + start, stop - start, out)
            start = end + 1
        self._buf = buf[start:] if start < n else b""
        return out

    cdef _line(self, const unsigned char *p, Py_ssize_t n, list out):
        cdef int code
        cdef unsigned char sep
        if n < 3 or not (_digit(p[0]) and _digit(p[1]) and _digit(p[2])):
            raise ReplyError("reply does not start with a three-digit code")
        code = (p[0] - 48) * 100 + (p[1] - 48) * 10 + (p[2] - 48)
        if not (100 <= code <= 599):
            raise ReplyError(f"reply code {code} out of range")
        sep = p[3] if n > 3 else 0
        if n > 3 and sep != 32 and sep != 45:
            raise ReplyError("malformed reply: no blank or '-' after the code")
        if self._code and code != self._code:
            raise ReplyError(f"reply code {code} inside a {self._code} reply")
        if n > 4:
            self._lines.append(PyBytes_FromStringAndSize(<const char *>p + 4, n - 4))
        else:
            self._lines.append(b"")
        if len(self._lines) == 1:
            self._enh = _enhanced(code, p + 4, n - 4) if n > 4 else ""
        if len(self._lines) > self.max_lines:
            raise ReplyError("reply has too many lines")
        if sep == 45:
            self._code = code
            return
        out.append((code, self._enh, self._lines))
        self._lines = []
        self._code = 0
        self._enh = ""
