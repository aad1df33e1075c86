"""master.master_proto - how the master and its children talk

SYNOPSIS
    from mta.master import master_proto as mp
    os.write(mp.MASTER_STATUS_FD, mp.encode_status(mp.STATUS_TAKEN, os.getpid()))
    for kind, pid in mp.decode_status(buf): ...

DESCRIPTION
    A child finds its first listener at descriptor 3 and the write end
    of its service's status pipe at descriptor 4; with more than one
    listener ("-s N" on its command line) the others follow at 5, 6 ...
    On the status pipe a child writes fixed-size records: "T" and its
    pid when it takes its first client, "A" and its pid when it is idle
    again, "U" and its pid once, when it first did the work it is there
    for (took a trigger, accepted a connection, got a delivery request).
    Every record is shorter than PIPE_BUF, so records of the children
    sharing one pipe never interleave. The master counts a new child as
    available until it says otherwise, and as used once it said "T" or
    "U": a child that dies unused is a bad start and throttles the
    service; one that dies after use is replaced at once.

    The master wakes a trigger service by connecting to its socket (or
    opening its fifo) and writing TRIGGER_WAKEUP.

SECURITY
    Records come from children, which may run unprivileged: the master
    ignores a pid that is not one of its children of that service.
"""

from __future__ import annotations

import struct

MASTER_LISTEN_FD = 3  # the child's first listener
MASTER_STATUS_FD = 4  # the child's end of the status pipe
MASTER_EXTRA_LISTEN_FD = 5  # second and further listeners, "-s N" in all

STATUS_AVAIL = b"A"  # the child waits for a client
STATUS_TAKEN = b"T"  # the child serves a client
STATUS_USED = b"U"  # the child did its work once: a later death is no bad start
STATUS_RECORD = struct.Struct("<cI")  # kind, pid: 5 bytes

from mta.common.trigger import TRIGGER_WAKEUP  # noqa: E402,F401 - wakeup request written by the master


def encode_status(kind: bytes, pid: int) -> bytes:
    return STATUS_RECORD.pack(kind, pid)


def decode_status(buf: bytes | bytearray) -> tuple[list[tuple[bytes, int]], int]:
    """Return ([(kind, pid)], bytes consumed) for the complete records in buf."""
    size = STATUS_RECORD.size
    n = len(buf) // size
    return [STATUS_RECORD.unpack_from(buf, i * size) for i in range(n)], n * size


def listen_fds(count: int) -> list[int]:
    """The descriptors where a child finds its count listeners."""
    return [MASTER_LISTEN_FD] + [MASTER_EXTRA_LISTEN_FD + i for i in range(count - 1)]
