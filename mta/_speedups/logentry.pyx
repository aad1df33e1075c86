# cython: language_level=3
"""logentry - per-message log entries, compiled twin of logentry_ref.py

Same API and results as logentry_ref: latest_reasons. It walks the bytes
once in C (a "\n" or "=" byte is never part of a longer UTF-8 sequence, so
bytes split where the decoded text would), remembers where the six fields
it looks at are, and makes Python objects only for the offset and the
reason of each entry that counts. An offset or notify that is not plain
ASCII digits goes to int(), as in the reference.
"""

from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.string cimport memchr, memcmp

from mta._speedups.logentry_ref import LOG_ACTIONS

cdef enum:  # the fields an entry is looked at for
    F_RECIPIENT = 0
    F_OFFSET
    F_ACTION
    F_STATUS
    F_NOTIFY
    F_REASON
    F_COUNT
    F_OTHER = -1

cdef int MAX_FAST_DIGITS = 18  # fits a long long; longer numbers go to int()


cdef inline int _field(const unsigned char *p, Py_ssize_t n) noexcept:
    """Which field a name is, or F_OTHER."""
    if n == 6:
        if memcmp(p, b"offset", 6) == 0:
            return F_OFFSET
        if memcmp(p, b"action", 6) == 0:
            return F_ACTION
        if memcmp(p, b"status", 6) == 0:
            return F_STATUS
        if memcmp(p, b"notify", 6) == 0:
            return F_NOTIFY
        if memcmp(p, b"reason", 6) == 0:
            return F_REASON
    elif n == 9 and memcmp(p, b"recipient", 9) == 0:
        return F_RECIPIENT
    return F_OTHER


cdef inline bint _is_action(const unsigned char *p, Py_ssize_t n) noexcept:
    if n == 7:
        return (memcmp(p, b"delayed", 7) == 0 or memcmp(p, b"relayed", 7) == 0)
    if n == 6:
        return memcmp(p, b"failed", 6) == 0
    if n == 8:
        return memcmp(p, b"expanded", 8) == 0
    if n == 9:
        return memcmp(p, b"delivered", 9) == 0
    return False


cdef object _number(const unsigned char *p, Py_ssize_t n):
    """int() of the value, or None when int() refuses it."""
    cdef long long value = 0
    cdef Py_ssize_t i
    if 0 < n <= MAX_FAST_DIGITS:
        for i in range(n):
            if not 48 <= p[i] <= 57:
                break
            value = value * 10 + (p[i] - 48)
        else:
            return value
    try:
        return int(PyUnicode_DecodeUTF8(<const char *>p, n, "surrogateescape"))
    except ValueError:
        return None


cdef int _entry(dict reasons, const unsigned char *p, Py_ssize_t start,
                Py_ssize_t end) except -1:
    """Take the entry in p[start:end] (no "\n" at either end) into reasons if it counts."""
    cdef Py_ssize_t at[F_COUNT]
    cdef Py_ssize_t size[F_COUNT]
    cdef Py_ssize_t line = start, stop, eq
    cdef const unsigned char *nl
    cdef const unsigned char *sign
    cdef int k
    for k in range(F_COUNT):
        at[k] = -1
    while line < end:
        nl = <const unsigned char *>memchr(p + line, 10, end - line)
        stop = end if nl == NULL else nl - p
        sign = <const unsigned char *>memchr(p + line, 61, stop - line)
        if sign == NULL:
            return 0  # a line without "=": damaged
        eq = sign - p
        k = _field(p + line, eq - line)
        if k != F_OTHER:
            at[k] = eq + 1
            size[k] = stop - eq - 1
        line = stop + 1
    for k in range(F_STATUS + 1):
        if at[k] < 0:
            return 0
    if not _is_action(p + at[F_ACTION], size[F_ACTION]):
        return 0
    offset = _number(p + at[F_OFFSET], size[F_OFFSET])
    if offset is None:
        return 0
    if at[F_NOTIFY] >= 0 and size[F_NOTIFY]:
        if _number(p + at[F_NOTIFY], size[F_NOTIFY]) is None:
            return 0
    if at[F_REASON] >= 0:
        reasons[offset] = PyUnicode_DecodeUTF8(
            <const char *>p + at[F_REASON], size[F_REASON], "surrogateescape"
        )
    else:
        reasons[offset] = ""
    return 0


def latest_reasons(data):
    cdef const unsigned char[::1] view = data
    cdef Py_ssize_t n = view.shape[0]
    cdef dict reasons = {}
    if n == 0:
        return reasons
    cdef const unsigned char *p = &view[0]
    cdef Py_ssize_t pos = 0, end, start, stop
    cdef const unsigned char *nl
    while pos <= n:
        # the block runs to the next "\n\n" (or the end)
        end = pos
        while True:
            nl = <const unsigned char *>memchr(p + end, 10, n - end) if end < n else NULL
            if nl == NULL:
                end = n
                stop = n
                break
            end = nl - p
            if end + 1 < n and p[end + 1] == 10:
                stop = end + 2
                break
            end += 1
        start = pos
        while start < end and p[start] == 10:
            start += 1
        while end > start and p[end - 1] == 10:
            end -= 1
        if start < end:
            _entry(reasons, p, start, end)
        if stop >= n:
            break
        pos = stop
    return reasons
