"""Shared pieces of the end-to-end benchmarks: ports, the load generator, CPU accounting.

Used by bench/intake/run.py and bench/relay/run.py; not a test module.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

SENDER = "bench@load.example"
RECIPIENT = "sink@bench.example"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.recv(100)
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing answers on port {port}")


def proc_tree_cpu(root_pids: list[int]) -> float:
    """User+system CPU seconds of the given processes and all their descendants,
    including children they already waited for (cutime/cstime)."""
    ticks = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        pid, ppid = int(entry), int(fields[1])
        stats[pid] = fields
        children.setdefault(ppid, []).append(pid)
    total = 0.0
    todo = list(root_pids)
    while todo:
        pid = todo.pop()
        fields = stats.get(pid)
        if fields is None:
            continue
        total += sum(int(fields[i]) for i in (11, 12, 13, 14)) / ticks
        todo.extend(children.get(pid, []))
    return total


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def smtp_source(
    port: int,
    sessions: int,
    messages: int,
    size: int,
    recipient: str = RECIPIENT,
    rcpts: int = 1,
) -> None:
    """Postfix's load generator: messages of size bytes over sessions connections.

    With rcpts > 1 each message has that many recipients, smtp-source's way:
    a number put in front of recipient (1sink@..., 2sink@...)."""
    argv = ["smtp-source", "-s", str(sessions), "-m", str(messages), "-l", str(size)]
    if rcpts > 1:
        argv += ["-r", str(rcpts)]
    argv += ["-f", SENDER, "-t", recipient, f"127.0.0.1:{port}"]
    subprocess.run(argv, check=True, capture_output=True, timeout=1800)
