"""master.supervise - process accounting for one master.cf service

SYNOPSIS
    from mta.master.supervise import Service, describe_exit
    svc = Service(entry, module, key, listeners, status_r, status_w)
    svc.add_child(pid); svc.on_status(b"T", pid)
    svc.wants_process(now)        # watch the listener for a new client?
    describe_exit(status)         # "exit status 1", "killed by signal 9" or ""

DESCRIPTION
    A Service knows its children and how many of them wait for a client.
    A new child counts as available until it reports that it took a
    client ("T" on the status pipe); it counts as available again when
    it reports "A". While no child is available, the process count is
    under maxproc (0: no limit) and the service is not throttled, the
    master watches the listener and starts one more process when a
    client arrives.

    A child that exits abnormally (non-zero status or a signal) before
    it was ever used (it reports "T" or "U" on its first trigger,
    connection or request) is a bad start: the service is throttled for
    service_throttle_time, during which no process is started, and then
    recovers by itself. A child that dies after it was used is replaced
    at once (prespawned services) or on demand, as in Postfix. "U"
    counts a use only; it changes neither the child's availability nor
    the service's "used" flag of conditional wakeups.

    retire() takes every child out of the accounting (reload, removal):
    they finish their clients and exit on their own after SIGTERM.

SECURITY
    Pure bookkeeping; status records name pids and are only believed for
    this service's own children.
"""

from __future__ import annotations

import os
import signal
import socket
from dataclasses import dataclass, field

from mta.config.master_cf import ServiceEntry
from mta.master import master_proto as mp


@dataclass
class Child:
    pid: int
    service_key: str
    module: str
    available: bool = True
    use_count: int = 0
    started: float = 0.0


def describe_exit(status: int) -> str:
    """Return "" for a clean exit, else Postfix's wording of what happened."""
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    if os.WIFEXITED(status) and os.WEXITSTATUS(status):
        return f"exit status {os.WEXITSTATUS(status)}"
    return ""


def service_signature(entry: ServiceEntry) -> tuple:
    """What must stay equal for a reload to leave a service's processes alone."""
    return (
        entry.name,
        entry.type,
        entry.private,
        entry.unpriv,
        entry.chroot,
        entry.wakeup,
        entry.wakeup_used_only,
        entry.maxproc,
        entry.command,
        tuple(entry.args),
        tuple(sorted(entry.overrides.items())),
    )


@dataclass
class Service:
    entry: ServiceEntry
    module: str
    key: tuple
    listeners: list[socket.socket | int]
    status_r: int
    status_w: int
    children: dict[int, Child] = field(default_factory=dict)
    avail: int = 0
    throttled_until: float = 0.0
    used: bool = False
    next_wakeup: float = 0.0
    limit_warned: bool = False
    status_buf: bytearray = field(default_factory=bytearray)

    @property
    def name(self) -> str:
        return self.entry.key

    @property
    def total(self) -> int:
        return len(self.children)

    def at_limit(self) -> bool:
        return self.entry.maxproc > 0 and self.total >= self.entry.maxproc

    def throttled(self, now: float) -> bool:
        return now < self.throttled_until

    def wants_process(self, now: float) -> bool:
        """True when a readable listener should start one more process."""
        return self.avail == 0 and not self.at_limit() and not self.throttled(now)

    def add_child(self, pid: int, now: float) -> Child:
        child = Child(pid, self.name, self.module, started=now)
        self.children[pid] = child
        self.avail += 1
        return child

    def remove_child(self, pid: int) -> Child | None:
        child = self.children.pop(pid, None)
        if child is not None and child.available:
            self.avail -= 1
        return child

    def on_status(self, kind: bytes, pid: int) -> None:
        """Apply one status record from the pipe."""
        child = self.children.get(pid)
        if child is None:
            return
        if kind == mp.STATUS_TAKEN and child.available:
            child.available = False
            child.use_count += 1
            self.avail -= 1
            self.used = True
        elif kind == mp.STATUS_AVAIL and not child.available:
            child.available = True
            self.avail += 1
        elif kind == mp.STATUS_USED:
            child.use_count += 1

    def feed_status(self, data: bytes) -> None:
        self.status_buf += data
        records, used = mp.decode_status(self.status_buf)
        del self.status_buf[:used]
        for kind, pid in records:
            self.on_status(kind, pid)

    def throttle(self, until: float) -> None:
        self.throttled_until = until

    def retire(self) -> list[Child]:
        """Take every child out of the accounting and return them."""
        gone = list(self.children.values())
        self.children.clear()
        self.avail = 0
        return gone


def signal_children(children, sig: int = signal.SIGTERM) -> None:
    for child in children:
        try:
            os.kill(child.pid, sig)
        except ProcessLookupError:
            pass
