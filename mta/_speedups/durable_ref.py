"""durable_ref - the few system calls that make a queue file durable; spec for durable.pyx

SYNOPSIS
    from mta._speedups.durable_ref import seal_file, fsync_dir, mark_done_at
    seal_file(fd, header, "/q/incoming/.123.tmp", "/q/incoming/4Xh2kq1ZmNz9")
    fsync_dir("/q/incoming")
    bad = mark_done_at("/q/active/4Xh2kq1ZmNz9", [412, 498])   # -1: all marked

DESCRIPTION
    seal_file() writes header at offset 0 of the open file fd, fsyncs
    it, closes it and renames tmp_path to final_path. It always closes
    fd, also when a step fails; a failure raises OSError naming the
    file.

    fsync_dir() makes a rename or unlink in a directory durable.

    mark_done_at() turns the recipient record at each offset into a
    done record ("R" or "D" becomes "D") and fdatasyncs the file once.
    It returns -1, or the first offset that holds no recipient record
    (nothing after it is marked, and nothing is synced).

    The compiled twin does each call's system calls in one stretch
    without the GIL, so a thread doing them never has to win the GIL
    back between them from a busy event loop.

SECURITY
    Paths and offsets come from the mail system's own queue files.
"""

from __future__ import annotations

import os


def seal_file(fd: int, header: bytes, tmp_path: str, final_path: str) -> None:
    try:
        try:
            os.pwrite(fd, header, 0)
            os.fsync(fd)
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, tmp_path) from None
    finally:
        os.close(fd)
    os.rename(tmp_path, final_path)


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def mark_done_at(path: str, offsets: list[int]) -> int:
    fd = os.open(path, os.O_RDWR)
    try:
        for offset in offsets:
            if os.pread(fd, 1, offset) not in (b"R", b"D"):
                return offset
            os.pwrite(fd, b"D", offset)
        if offsets:
            os.fdatasync(fd)
    finally:
        os.close(fd)
    return -1
