# cython: language_level=3
"""durable - compiled twin of durable_ref.py

Same API and results: seal_file, fsync_dir and mark_done_at. Each call
runs its system calls in one nogil block, so a worker thread needs the
GIL only to start and to return, not once per system call.
"""

from libc.errno cimport EIO, errno
from posix.fcntl cimport O_DIRECTORY, O_RDONLY, O_RDWR, open
from posix.unistd cimport close, fdatasync, fsync, pread, pwrite

from cpython.exc cimport PyErr_SetFromErrnoWithFilenameObject


cdef extern from "<stdio.h>" nogil:
    int rename(const char *old, const char *new)


cdef int _raise(int err, object name) except -1:
    global errno
    errno = err
    PyErr_SetFromErrnoWithFilenameObject(OSError, name)
    return -1


def seal_file(int fd, bytes header, str tmp_path, str final_path):
    cdef bytes tmp_b = tmp_path.encode("utf-8", "surrogateescape")
    cdef bytes final_b = final_path.encode("utf-8", "surrogateescape")
    cdef const char *h = header
    cdef Py_ssize_t n = len(header)
    cdef const char *tmp = tmp_b
    cdef const char *fin = final_b
    cdef int err = 0
    cdef Py_ssize_t done = 0, w
    with nogil:
        while done < n:
            w = pwrite(fd, h + done, n - done, done)
            if w < 0:
                err = errno
                break
            if w == 0:
                err = EIO
                break
            done += w
        if not err and fsync(fd) < 0:
            err = errno
        close(fd)
        if not err and rename(tmp, fin) < 0:
            err = errno
    if err:
        _raise(err, tmp_path)


def fsync_dir(str path):
    cdef bytes path_b = path.encode("utf-8", "surrogateescape")
    cdef const char *p = path_b
    cdef int fd, err = 0
    with nogil:
        fd = open(p, O_RDONLY | O_DIRECTORY)
        if fd < 0:
            err = errno
        else:
            if fsync(fd) < 0:
                err = errno
            close(fd)
    if err:
        _raise(err, path)


def mark_done_at(str path, list offsets):
    cdef bytes path_b = path.encode("utf-8", "surrogateescape")
    cdef const char *p = path_b
    cdef Py_ssize_t count = len(offsets), i
    cdef long long *offs = NULL
    cdef long long bad = -1
    cdef int fd, err = 0
    cdef char byte
    cdef char mark = b"D"
    cdef Py_ssize_t got
    if count > 512:
        # a huge batch: plain Python keeps the C part simple
        from mta._speedups.durable_ref import mark_done_at as slow
        return slow(path, offsets)
    cdef long long small[512]
    offs = small
    for i in range(count):
        offs[i] = offsets[i]
    with nogil:
        fd = open(p, O_RDWR)
        if fd < 0:
            err = errno
        else:
            for i in range(count):
                got = pread(fd, &byte, 1, offs[i])
                if got < 0:
                    err = errno
                    break
                if got != 1 or (byte != b"R" and byte != b"D"):
                    bad = offs[i]
                    break
                if pwrite(fd, &mark, 1, offs[i]) != 1:
                    err = errno
                    break
            if not err and bad < 0 and count and fdatasync(fd) < 0:
                err = errno
            close(fd)
    if err:
        _raise(err, path)
    return bad
