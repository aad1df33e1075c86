# cython: language_level=3
"""maptext - lookup table source parser, compiled twin of maptext_ref.py

Same signature and results as maptext_ref.parse_table_text: one pass over
the buffer with a char pointer; a logical line that spans several physical
lines is joined into a temporary bytes object, every other line is parsed
in place.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.string cimport memchr


cdef inline bint _is_ws(unsigned char c) noexcept nogil:
    return c == 32 or (9 <= c <= 13)


cdef str _text(const unsigned char *p, Py_ssize_t n):
    return (<bytes>p[:n]).decode("utf-8", "replace")


cdef void _finish(const unsigned char *p, Py_ssize_t n, int lineno, bint fold,
                  list pairs, list warnings) except *:
    cdef Py_ssize_t i = 0, k, vstart
    cdef bint quoted = False
    cdef unsigned char c
    cdef bytes key
    cdef char *kb
    while n > 0 and _is_ws(p[n - 1]):
        n -= 1
    while i < n:
        c = p[i]
        if c == 0x5C:
            i += 2
            continue
        if quoted:
            if c == 0x22:
                quoted = False
        elif c == 0x22:
            quoted = True
        elif _is_ws(c):
            break
        i += 1
    if quoted:
        warnings.append((lineno, "unbalanced '\"' in '" + _text(p, n) + "' -- ignoring this line"))
        return
    vstart = i
    while vstart < n and _is_ws(p[vstart]):
        vstart += 1
    if vstart >= n:
        warnings.append((lineno, "expected format: key whitespace value -- ignoring this line"))
        return
    if i > 0 and p[i - 1] == 0x3A:
        warnings.append((lineno, 'record is in "key: value" format; is this an alias file?'))
    if fold and i > 0:
        # a fresh object: PyBytes_FromStringAndSize(p, 1) may return a shared
        # single-byte singleton, which must never be written to
        key = PyBytes_FromStringAndSize(NULL, i)
        kb = PyBytes_AS_STRING(key)
        for k in range(i):
            c = p[k]
            kb[k] = <char>(c + 32) if 65 <= c <= 90 else <char>c
    else:
        key = PyBytes_FromStringAndSize(<const char *>p, i)
    pairs.append((key, PyBytes_FromStringAndSize(<const char *>p + vstart, n - vstart)))


def parse_table_text(data, bint fold):
    """Return (key/value pairs in order, warnings as (line, message)) for a table source."""
    cdef bytes buf = bytes(data)
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(buf)
    cdef Py_ssize_t n = len(buf), pos = 0, end, j
    cdef Py_ssize_t seg_start = -1, seg_end = 0
    cdef const void *hit
    cdef int lineno = 0, start_line = 0
    cdef list pairs = [], warnings = [], extra = None
    cdef bytes joined
    cdef str shown
    while pos <= n:
        lineno += 1
        hit = memchr(p + pos, 10, n - pos) if pos < n else NULL
        end = (<const unsigned char *>hit - p) if hit != NULL else n
        j = pos
        while j < end and _is_ws(p[j]):
            j += 1
        if j < end and p[j] != 0x23:
            if j > pos:  # continuation line
                if seg_start >= 0:
                    if extra is None:
                        extra = [buf[seg_start:seg_end]]
                    extra.append(buf[pos:end])
                else:
                    j = end
                    while j > pos and _is_ws(p[j - 1]):
                        j -= 1
                    shown = _text(p + pos, j - pos)
                    warnings.append(
                        (lineno, 'logical line must not start with whitespace: "' + shown + '"'))
            else:
                if seg_start >= 0:
                    if extra is None:
                        _finish(p + seg_start, seg_end - seg_start, start_line, fold,
                                pairs, warnings)
                    else:
                        joined = b"".join(extra)
                        _finish(<const unsigned char *>PyBytes_AS_STRING(joined),
                                len(joined), start_line, fold, pairs, warnings)
                        extra = None
                seg_start = pos
                seg_end = end
                start_line = lineno
        pos = end + 1
    if seg_start >= 0:
        if extra is None:
            _finish(p + seg_start, seg_end - seg_start, start_line, fold, pairs, warnings)
        else:
            joined = b"".join(extra)
            _finish(<const unsigned char *>PyBytes_AS_STRING(joined), len(joined),
                    start_line, fold, pairs, warnings)
    return pairs, warnings
