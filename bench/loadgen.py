"""Shared pieces of the end-to-end benchmarks: ports, the load generator, CPU accounting.

Used by bench/intake/run.py and bench/relay/run.py; not a test module.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
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


def _proc_table() -> tuple[dict[int, list[str]], dict[int, list[int]]]:
    """({pid: /proc/PID/stat fields after the name}, {ppid: [child pids]}) of every process now."""
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
        stats[int(entry)] = fields
        children.setdefault(int(fields[1]), []).append(int(entry))
    return stats, children


def proc_tree_cpu(root_pids: list[int]) -> float:
    """User+system CPU seconds of the given processes and all their descendants,
    including children they already waited for (cutime/cstime)."""
    ticks = os.sysconf("SC_CLK_TCK")
    stats, children = _proc_table()
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


def pin_tree(root_pids: list[int], cpus: set[int]) -> int:
    """Bind the given processes and their descendants to cpus; return how many.

    Processes started later by any of them (a master's new daemons)
    inherit the binding."""
    _, children = _proc_table()
    todo, done = list(root_pids), 0
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            os.sched_setaffinity(pid, cpus)
            done += 1
        except OSError:
            continue  # gone meanwhile
    return done


def service_cpu(root_pids: list[int]) -> dict[int, tuple[str, float]]:
    """{pid: (program, user+system CPU seconds)} of the live descendants of root_pids.

    The program is the daemon's name (smtpd, smtp, qmgr, ...), taken from
    the module mta's master runs or the file Postfix's master runs."""
    ticks = os.sysconf("SC_CLK_TCK")
    stats, children = _proc_table()
    out: dict[int, tuple[str, float]] = {}
    todo = [c for pid in root_pids for c in children.get(pid, [])]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        # mta's children run "python -m mta.smtpd ...", Postfix's "smtpd ..."
        name = argv[2].rsplit(".", 1)[-1] if argv[1:2] == ["-m"] else os.path.basename(argv[0])
        out[pid] = (name, sum(int(stats[pid][i]) for i in (11, 12)) / ticks)
    return out


def cpu_by_service(
    before: dict, after: dict, messages: int, tree_seconds: float | None = None
) -> dict[str, float]:
    """CPU milliseconds per message of each service between two service_cpu() samples.

    A process that exited between the samples (Postfix's daemons end after
    max_use requests) is not among the live ones any more; its time is in
    its master's cutime/cstime. With tree_seconds, the CPU of the whole
    process tree over the same time (proc_tree_cpu), what the live
    processes do not account for is reported as "exited", so the parts
    add up to the total."""
    total: dict[str, float] = {}
    for pid, (name, cpu) in after.items():
        spent = cpu - before.get(pid, (name, 0.0))[1]
        total[name] = total.get(name, 0.0) + spent
    if tree_seconds is not None:
        rest = tree_seconds - sum(total.values())
        if rest > 0:
            total["exited"] = rest
    return {k: round(1000 * v / max(1, messages), 3) for k, v in sorted(total.items()) if v > 0}


def device_flushes(path: Path | str) -> int | None:
    """Flush requests the block device under path has completed since boot.

    From /proc/diskstats (the 16th number after the device name, Linux 5.5
    and newer), for the whole disk when path lives on a partition: each one
    is a cache flush the disk had to do, what an fsync costs on a disk with
    a volatile write cache. None where the kernel does not count them or the
    file system has no block device (tmpfs, overlay)."""
    dev = os.stat(path).st_dev
    sys_dev = Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}")
    try:
        real = sys_dev.resolve(strict=True)
    except OSError:
        return None
    disk = real.parent.name if (real / "partition").exists() else real.name
    for line in Path("/proc/diskstats").read_text().splitlines():
        fields = line.split()
        if len(fields) >= 20 and fields[2] == disk:  # major, minor, name, then 17 counters
            return int(fields[18])
    return None


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
    reuse: bool = False,
) -> None:
    """Postfix's load generator: messages of size bytes over sessions connections.

    With rcpts > 1 each message has that many recipients, smtp-source's way:
    a number put in front of recipient (1sink@..., 2sink@...). With reuse
    each session sends message after message over one connection (-d)
    instead of one message per connection."""
    argv = ["smtp-source", "-s", str(sessions), "-m", str(messages), "-l", str(size)]
    if reuse:
        argv.append("-d")
    if rcpts > 1:
        argv += ["-r", str(rcpts)]
    argv += ["-f", SENDER, "-t", recipient, f"127.0.0.1:{port}"]
    subprocess.run(argv, check=True, capture_output=True, timeout=1800)


# ---------------------------------------------------------------- servers
MTA_MAIN_CF = (
    "myhostname = mta.bench.example\n"
    "inet_interfaces = loopback-only\nmynetworks = 127.0.0.0/8\n"
    "smtpd_peername_lookup = no\nmax_idle = 600s\nmax_use = 100000\n"
    "alias_maps =\nlocal_recipient_maps =\n"
)
POSTFIX_MAIN_CF = (
    "compatibility_level = 3.6\ncommand_directory = /usr/sbin\n"
    "mail_owner = postfix\nsetgid_group = postdrop\nmyhostname = postfix.bench.example\n"
    "inet_interfaces = 127.0.0.1\nmynetworks = 127.0.0.0/8\n"
    "maillog_file = /dev/stdout\nalias_maps =\nlocal_recipient_maps =\n"
    "smtpd_peername_lookup = no\nsmtpd_client_connection_count_limit = 0\n"
    # the same process lifetime as mta's above: neither restarts its daemons
    # every 100 requests (the default max_use) during a run
    "max_idle = 600s\nmax_use = 100000\n"
)


class MtaInstance:
    """mta under top (etc/, spool/, data/, maillog), started with "mta start"."""

    name = "mta"

    def __init__(self, top: Path, port: int, main_cf: str, master_cf: str) -> None:
        import pwd

        self.top, self.port = top, port
        self.etc = top / "etc"
        self.queue = top / "spool"
        self.etc.mkdir(parents=True)
        user = pwd.getpwuid(os.getuid()).pw_name
        (self.etc / "main.cf").write_text(
            f"queue_directory = {self.queue}\ndata_directory = {top / 'data'}\n"
            f"maillog_file = {top / 'maillog'}\nmail_owner = {user}\n" + MTA_MAIN_CF + main_cf
        )
        (self.etc / "master.cf").write_text(master_cf)

    def mta(self, *args: str, check: bool = True) -> None:
        # the master starts from / with PYTHONSAFEPATH: without PYTHONPATH it
        # would find no mta unless one is installed; default to this tree
        env = dict(os.environ)
        env.setdefault("PYTHONPATH", str(Path(__file__).resolve().parent.parent))
        subprocess.run(
            [sys.executable, "-m", "mta", *args, "-c", str(self.etc)],
            check=check,
            capture_output=True,
            env=env,
        )

    def start(self) -> None:
        self.mta("start")
        wait_port(self.port)

    def stop(self) -> None:
        self.mta("stop", check=False)

    def pids(self) -> list[int]:
        return [int((self.queue / "pid" / "master.pid").read_text().split()[0])]


class PostfixInstance:
    """A private Postfix instance under top, run by Postfix's own master (needs root)."""

    name = "postfix"
    DAEMONS = "/usr/lib/postfix/sbin"

    def __init__(self, top: Path, port: int, main_cf: str, master_cf: str) -> None:
        self.top, self.port = top, port
        self.etc = top / "etc"
        self.queue = top / "spool"
        for d in (self.etc, self.queue, top / "data"):
            d.mkdir(parents=True)
        shutil.chown(top / "data", "postfix")
        (self.etc / "main.cf").write_text(
            f"queue_directory = {self.queue}\ndata_directory = {top / 'data'}\n"
            f"daemon_directory = {self.DAEMONS}\n" + POSTFIX_MAIN_CF + main_cf
        )
        (self.etc / "master.cf").write_text(master_cf)
        self.proc: subprocess.Popen | None = None

    @staticmethod
    def available() -> bool:
        return os.path.exists(f"{PostfixInstance.DAEMONS}/master") and os.getuid() == 0

    def start(self) -> None:
        subprocess.run(["postfix", "-c", str(self.etc), "check"], capture_output=True)
        with open(self.top / "maillog", "wb") as maillog:
            self.proc = subprocess.Popen(
                [f"{self.DAEMONS}/master", "-c", str(self.etc), "-d"],
                stdout=maillog,
                stderr=subprocess.STDOUT,
            )
        wait_port(self.port)

    def stop(self) -> None:
        if self.proc:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(20)

    def pids(self) -> list[int]:
        return [self.proc.pid]
