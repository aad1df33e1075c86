"""Ports for test servers on 127.0.0.1 that no other test or worker can be given.

free_port() used to bind port 0 and hand back what the kernel chose. That
port comes from the ephemeral range, the same range every outgoing
connection takes its source port from, so between the test closing the
probe socket and its server binding the port, another connection could
take it; with tests in parallel (pytest-xdist) another worker could be
handed the same port, too.

Here each process owns a block of ports below the ephemeral range
(net.ipv4.ip_local_port_range starts at 32768 on Linux): the block follows
from the pytest-xdist worker number (PYTEST_XDIST_WORKER=gw3 -> block 3)
or, outside xdist, from the process id, so that a test's own helper
processes and concurrent runs fall in other blocks. Within the block ports
are handed out in turn and never twice in a run until the block wraps;
each is checked to be bindable first.
"""

from __future__ import annotations

import itertools
import os
import socket
import threading

BASE = 12000  # above the well-known and common service ports
TOP = 32000  # below the ephemeral range, which starts at 32768
BLOCK = 1000  # ports per process: more than any one run hands out
BLOCKS = (TOP - BASE) // BLOCK


def _block() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if worker.startswith("gw") and worker[2:].isdigit():
        return int(worker[2:]) % BLOCKS
    # not under xdist: a block from the pid, away from the workers' first blocks
    return 8 + os.getpid() % (BLOCKS - 8)


_lock = threading.Lock()
_next = itertools.count()
_start = BASE + _block() * BLOCK


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now and given to no one else in this run."""
    with _lock:
        for _ in range(BLOCK):
            port = _start + next(_next) % BLOCK
            with socket.socket() as s:  # no SO_REUSEADDR: a port in TIME_WAIT is passed over
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError(f"no free port in {_start}-{_start + BLOCK - 1}")
