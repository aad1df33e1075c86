"""Intake benchmark: messages per second accepted and fsynced, mta against baselines.

Usage:
    python bench/intake/run.py [--sessions 1 10 50] [--messages 3000] [--size 4096]
                               [--targets mta,aiosmtpd,postfix] [--pin] [--repeat N]
                               [--json FILE]

For each target and each session count, Postfix's smtp-source sends --messages
messages of --size bytes with one recipient each to a server on 127.0.0.1, and
a latency probe sends one message at a time on its own connection during the
run. Reported per run: wall-clock messages/second, p50 and p99 time from the
end of DATA to the 250 reply (from the probe), server CPU seconds per message
(user+system of the server's processes, from /proc), and the files that
reached the queue.

Targets:
  mta       the real thing: "mta start" with smtpd in master.cf
  aiosmtpd  aiosmtpd with a handler that writes and fsyncs one file per message
  postfix   Postfix's own master/smtpd/cleanup with delivery deferred
            (defer_transports), when Postfix is installed; needs root

With --pin the server's processes run on CPU 0 and smtp-source with the
probe on CPU 1, so the load generator no longer takes the server's CPU;
--repeat N runs the targets N times, interleaved.

Everything listens on 127.0.0.1 only. The machine's two cores are shared by the
load generator and the server, as they would be for Postfix.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import smtplib
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from loadgen import (  # noqa: E402 - after the path is set
    RECIPIENT,
    SENDER,
    MtaInstance,
    PostfixInstance,
    free_port,
    percentile,
    pin_tree,
    proc_tree_cpu,
    smtp_source,
    wait_port,
)

ROOT = HERE.parent.parent
SERVER_CPU, LOAD_CPU = 0, 1  # with --pin


def count_files(directory: Path) -> int:
    n = 0
    for _, _, files in os.walk(directory):
        n += sum(1 for f in files if not f.startswith("."))
    return n


class Probe(threading.Thread):
    """Sends one message at a time and records end-of-DATA to 250 latency."""

    def __init__(self, port: int, size: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.body = make_message(size)
        self.samples: list[float] = []
        self.stop_flag = threading.Event()

    def run(self) -> None:
        try:
            with smtplib.SMTP("127.0.0.1", self.port, timeout=60) as s:
                s.ehlo("probe.example")
                while not self.stop_flag.is_set():
                    s.mail(SENDER)
                    s.rcpt(RECIPIENT)
                    code, _ = s.docmd("DATA")
                    assert code == 354
                    s.send(self.body + b".\r\n")
                    start = time.perf_counter()
                    code, _ = s.getreply()
                    self.samples.append(time.perf_counter() - start)
                    time.sleep(0.005)
        except (OSError, smtplib.SMTPException):
            pass


def make_message(size: int) -> bytes:
    head = f"From: <{SENDER}>\r\nTo: <{RECIPIENT}>\r\nSubject: probe\r\n\r\n".encode()
    line = b"x" * 76 + b"\r\n"
    body = line * max(1, (size - len(head)) // len(line))
    return head + body


# ---------------------------------------------------------------- targets
class Target:
    name = ""
    queue: Path

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def pids(self) -> list[int]: ...


class MtaTarget(MtaInstance, Target):
    def __init__(self, top: Path, port: int) -> None:
        super().__init__(
            top,
            port,
            "mydestination = bench.example\n",
            f"127.0.0.1:{port} inet n - n - - smtpd\nproxymap unix - - n - - proxymap\n",
        )

    @property
    def incoming(self) -> Path:
        return self.queue / "incoming"


class AiosmtpdTarget(Target):
    name = "aiosmtpd"

    def __init__(self, top: Path, port: int) -> None:
        self.port = port
        self.queue = top / "spool"
        self.queue.mkdir(parents=True)
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "aiosmtpd_fsync.py"), str(self.port), str(self.queue)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self.proc.stdout.readline()
        wait_port(self.port)

    def stop(self) -> None:
        if self.proc:
            self.proc.terminate()
            self.proc.wait(10)

    def pids(self) -> list[int]:
        return [self.proc.pid]

    @property
    def incoming(self) -> Path:
        return self.queue


class PostfixTarget(PostfixInstance, Target):
    def __init__(self, top: Path, port: int) -> None:
        super().__init__(
            top,
            port,
            "mydestination =\nrelay_domains =\ndefer_transports = smtp, local, relay, virtual\n",
            f"127.0.0.1:{port} inet n - n - - smtpd\n"
            "cleanup unix n - n - 0 cleanup\n"
            "rewrite unix - - n - - trivial-rewrite\n"
            "qmgr unix n - n 300 1 qmgr\n"
            "defer unix - - n - 0 bounce\n"
            "bounce unix - - n - 0 bounce\n"
            "anvil unix - - n - 1 anvil\n"
            "proxymap unix - - n - - proxymap\n"
            "postlog unix-dgram n - n - 1 postlogd\n",
        )

    @property
    def incoming(self) -> Path:
        return self.queue  # incoming, active and deferred all count as accepted


TARGETS = {"mta": MtaTarget, "aiosmtpd": AiosmtpdTarget, "postfix": PostfixTarget}


def run_one(target_cls, sessions: int, messages: int, size: int, pin: bool = False) -> dict:
    top = Path(tempfile.mkdtemp(prefix=f"intake-{target_cls.name}-"))
    os.chmod(top, 0o755)  # Postfix's daemons run as postfix and must reach the spool
    port = free_port()
    target = target_cls(top, port)
    target.start()
    try:
        if pin:
            # the server on CPU 0; this process, its probe and smtp-source
            # (started from here) on CPU 1 (main() moved this process there)
            pin_tree(target.pids(), {SERVER_CPU})
        smtp_source(port, 2, 20, size)  # warm up: start processes, fill caches
        before_files = count_files(target.incoming)
        cpu0 = proc_tree_cpu(target.pids())
        probe = Probe(port, size)
        start = time.perf_counter()
        probe.start()
        smtp_source(port, sessions, messages, size)
        elapsed = time.perf_counter() - start
        probe.stop_flag.set()
        probe.join(60)
        cpu = proc_tree_cpu(target.pids()) - cpu0
        total = messages + len(probe.samples)
        queued = count_files(target.incoming) - before_files
    finally:
        target.stop()
        shutil.rmtree(top, ignore_errors=True)
    return {
        "target": target_cls.name,
        "sessions": sessions,
        "messages": messages,
        "size": size,
        "seconds": round(elapsed, 3),
        "msg_per_s": round(messages / elapsed, 1),
        "p50_ms": round(1000 * percentile(probe.samples, 0.50), 2),
        "p99_ms": round(1000 * percentile(probe.samples, 0.99), 2),
        "probe_samples": len(probe.samples),
        "cpu_ms_per_msg": round(1000 * cpu / total, 3),
        "queued": queued,
        "pinned": pin,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--targets", default="mta,aiosmtpd,postfix")
    parser.add_argument(
        "--pin",
        action="store_true",
        help="the server's processes on CPU 0, smtp-source and the probe on CPU 1 (taskset-style)",
    )
    parser.add_argument("--repeat", type=int, default=1, help="interleaved runs of every target")
    parser.add_argument("--json", help="write the results here too")
    args = parser.parse_args()
    if shutil.which("smtp-source") is None:
        sys.exit("smtp-source (Debian package postfix) is needed")
    if args.pin:
        if len(os.sched_getaffinity(0)) < 2:
            sys.exit("--pin needs two CPUs")
        os.sched_setaffinity(0, {LOAD_CPU})
    results = []
    names = args.targets.split(",")
    if "postfix" in names and not PostfixTarget.available():
        print("postfix: skipped (not installed, or not root)", file=sys.stderr)
        names.remove("postfix")
    for sessions in args.sessions:
        for run in range(args.repeat):  # interleaved: host drift hits every target
            for name in names:
                row = run_one(TARGETS[name], sessions, args.messages, args.size, args.pin)
                row["run"] = run
                results.append(row)
                print(json.dumps(row), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    print()
    print(f"{'target':10} {'sess':>4} {'msg/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'cpu ms/msg':>10}")
    for r in results:
        print(
            f"{r['target']:10} {r['sessions']:>4} {r['msg_per_s']:>8} {r['p50_ms']:>8} "
            f"{r['p99_ms']:>8} {r['cpu_ms_per_msg']:>10}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
