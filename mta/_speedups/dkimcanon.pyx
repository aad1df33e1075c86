# cython: language_level=3
"""dkimcanon - DKIM canonicalization, compiled twin of dkimcanon_ref.py

Same API and results as dkimcanon_ref. Each line or header value is
walked once with a char pointer into a buffer of the output's largest
size, and the result built with one PyBytes_FromStringAndSize.
"""

from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.string cimport memcpy


cdef inline bint _wsp(unsigned char c) noexcept nogil:
    return c == 32 or c == 9


cdef class BodyCanon:
    cdef public bint relaxed
    cdef public Py_ssize_t empty
    cdef public bint seen

    def __init__(self, relaxed=True):
        self.relaxed = bool(relaxed)
        self.empty = 0
        self.seen = False

    def line(self, data):
        cdef const unsigned char[::1] view = data
        cdef Py_ssize_t n = view.shape[0], i, k = 0, held = self.empty
        cdef const unsigned char *src
        cdef unsigned char *out
        cdef bint space = False
        cdef unsigned char c
        cdef bytes result
        if n == 0:
            self.empty += 1
            return b""
        src = &view[0]
        out = <unsigned char *>PyMem_Malloc(2 * held + n + 2)
        if out == NULL:
            raise MemoryError()
        try:
            k = 2 * held  # the held-back empty lines go first, if any content follows
            if self.relaxed:
                for i in range(n):
                    c = src[i]
                    if _wsp(c):
                        space = True
                        continue
                    if space:
                        out[k] = 32
                        k += 1
                        space = False
                    out[k] = c
                    k += 1
            else:
                memcpy(out + k, src, n)
                k += n
            if k == 2 * held:  # nothing but white space: an empty line
                self.empty += 1
                return b""
            for i in range(held):
                out[2 * i] = 13
                out[2 * i + 1] = 10
            out[k] = 13
            out[k + 1] = 10
            result = PyBytes_FromStringAndSize(<const char *>out, k + 2)
        finally:
            PyMem_Free(out)
        self.empty = 0
        self.seen = True
        return result

    def finish(self):
        self.empty = 0
        if self.seen or self.relaxed:
            return b""
        self.seen = True
        return b"\r\n"


def header_relaxed(name, value):
    cdef const unsigned char[::1] nv = name
    cdef const unsigned char[::1] vv = value
    cdef Py_ssize_t nn = nv.shape[0], n = vv.shape[0], a = 0, b, i, k = 0
    cdef unsigned char *out
    cdef unsigned char c
    cdef bint space = False
    cdef bytes result
    out = <unsigned char *>PyMem_Malloc(nn + n + 3)
    if out == NULL:
        raise MemoryError()
    try:
        b = nn
        while a < b and _wsp(nv[a]):
            a += 1
        while b > a and _wsp(nv[b - 1]):
            b -= 1
        for i in range(a, b):
            c = nv[i]
            out[k] = c + 32 if 65 <= c <= 90 else c
            k += 1
        out[k] = 58  # ":"
        k += 1
        a = k  # where the value starts: no space is put before its first byte
        for i in range(n):
            c = vv[i]
            if c == 10 or (c == 13 and i + 1 < n and vv[i + 1] == 10):
                continue
            if _wsp(c):
                space = True
                continue
            if space and k > a:
                out[k] = 32
                k += 1
            space = False
            out[k] = c
            k += 1
        out[k] = 13
        out[k + 1] = 10
        result = PyBytes_FromStringAndSize(<const char *>out, k + 2)
    finally:
        PyMem_Free(out)
    return result


def header_simple(name, value):
    return bytes(name) + b":" + bytes(value) + b"\r\n"
