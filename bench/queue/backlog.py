"""Backlog benchmark: a deferred queue of a million messages, listed, shaped and drained.

Usage:
    python bench/queue/backlog.py [--messages 1000000] [--drain-seconds 120] [--json FILE]

What a site meets after a long outage of its relay: --messages messages
(one recipient each, 2 KB of content) wait in deferred/ with their retry
time come. This fills such a queue directly (queue files written from one
template, each under its own queue id, without fsync: the fill is set-up,
not what is measured), then measures, mta alone:

  1. `mta queue` (mailq): seconds to its first line of output and to
     its end, and its peak RSS;
  2. `mta qshape deferred`: seconds to finish and peak RSS;
  3. the MTA started with smtp-sink as the relay: seconds to the first
     delivery, deliveries per second over --drain-seconds (from the
     maillog's status=sent lines), and the queue manager's RSS sampled
     every half second from start to the end of the window (its peak
     is the figure; the issue asks for under 1 GiB throughout).

The queue left after the window is thrown away with the instance.
Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "relay"))
from loadgen import free_port  # noqa: E402
from run import MtaTarget, ProbeSink, SmtpSinks, routing  # noqa: E402

from mta.queue.queue_file import QueueFileWriter, Recipient, queue_dir_for  # noqa: E402
from mta.queue.queue_id import make_queue_id  # noqa: E402

BODY = b"From: <bulk@src.example>\nSubject: backlog\n\n" + b"x" * 2000 + b"\n"
SENDER = "bulk@src.example"


def template(qdir: str) -> bytes:
    """The bytes of one deferred queue file, written by the real writer."""
    w = QueueFileWriter(qdir, "deferred")
    w.write_envelope(SENDER, [Recipient(address="sink@bench.example")], {})
    w.write_content(BODY)
    qid = w.commit()  # the one fsync of the fill
    final = os.path.join(queue_dir_for(qdir, "deferred", qid, 1, ("deferred", "defer")), qid)
    data = Path(final).read_bytes()
    os.unlink(final)
    if qid.encode() in data:
        raise SystemExit("the queue file names its own id: a template fill would be wrong")
    return data


def fill(qdir: str, n: int, progress: bool) -> float:
    """Write n deferred queue files from one template; return the seconds taken."""
    data = template(qdir)
    top = os.path.join(qdir, "deferred")
    made: set[str] = set()
    past = time.time() - 60  # retry time come: every message is eligible at once
    start = time.perf_counter()
    for i in range(n):
        tmp = os.path.join(top, f".fill{i}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, data)
        qid = make_queue_id(past - n + i / 1000, os.fstat(fd).st_ino)
        os.close(fd)
        os.utime(tmp, (past, past))
        sub = queue_dir_for(qdir, "deferred", qid, 1, ("deferred", "defer"))
        if sub not in made:
            os.makedirs(sub, exist_ok=True)
            made.add(sub)
        os.rename(tmp, os.path.join(sub, qid))
        if progress and i % 50000 == 0:
            sys.stderr.write(f"\rfill {i}/{n}")
    if progress:
        sys.stderr.write(f"\rfill {n}/{n}\n")
    return time.perf_counter() - start


def timed_listing(argv: list[str], env: dict) -> dict:
    """Run a listing command: seconds to its first line, to its end, and its peak RSS."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, env=env)
    first = None
    lines = 0
    for _ in proc.stdout:
        if first is None:
            first = time.perf_counter() - start
        lines += 1
    _, status, usage = os.wait4(proc.pid, 0)
    return {
        "first_line_s": round(first, 3) if first is not None else None,
        "total_s": round(time.perf_counter() - start, 2),
        "lines": lines,
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "status": os.waitstatus_to_exitcode(status),
    }


def qmgr_rss_mb(queue: Path) -> float | None:
    """The queue manager's resident set now, from /proc (None if not running)."""
    out = subprocess.run(["pgrep", "-f", f"mta.qmgr .*{queue.parent}"], capture_output=True)
    pids = [int(p) for p in out.stdout.split()]
    best = None
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) / 1024
                    best = rss if best is None else max(best, rss)
        except OSError:
            continue
    return best


def count_sent(maillog: Path, state: dict) -> int:
    """status=sent lines added to the maillog since the last call, added to state."""
    try:
        with open(maillog, "rb") as f:
            f.seek(state.get("pos", 0))
            chunk = f.read()
    except OSError:
        return state.get("sent", 0)
    end = chunk.rfind(b"\n") + 1
    state["pos"] = state.get("pos", 0) + end
    state["sent"] = state.get("sent", 0) + chunk[:end].count(b" status=sent ")
    return state["sent"]


def run(args) -> dict:
    top = Path(tempfile.mkdtemp(prefix="backlog-"))
    sinks = SmtpSinks(1)
    probe_sink = ProbeSink(None)  # routing() wants its port; nothing is sent there
    sinks.start()
    probe_sink.start()
    transport, alias, _ = routing(sinks, probe_sink.port, 1)
    target = MtaTarget(top, free_port(), transport, alias)
    result: dict = {"messages": args.messages}
    try:
        target.mta("start")  # creates the queue tree
        target.stop()
        qdir = str(target.queue)
        result["fill_s"] = round(fill(qdir, args.messages, sys.stderr.isatty()), 1)
        env = dict(os.environ)
        base = [sys.executable, "-m", "mta"]
        result["mta_queue"] = timed_listing([*base, "queue", "-c", str(target.etc)], env)
        result["mta_qshape"] = timed_listing(
            [*base, "qshape", "-c", str(target.etc), "deferred"], env
        )
        rss: list[float] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                value = qmgr_rss_mb(target.queue)
                if value is not None:
                    rss.append(value)
                stop.wait(0.5)

        sampler = threading.Thread(target=sample, daemon=True)
        state: dict = {}
        maillog = top / "maillog"
        start = time.perf_counter()
        target.mta("start")
        sampler.start()
        first = None
        deadline = time.monotonic() + 300
        while first is None and time.monotonic() < deadline:
            if count_sent(maillog, state):
                first = time.perf_counter() - start
            else:
                time.sleep(0.05)
        sent0 = count_sent(maillog, state)
        t0 = time.perf_counter()
        time.sleep(args.drain_seconds)
        sent1 = count_sent(maillog, state)
        window = time.perf_counter() - t0
        stop.set()
        sampler.join()
        result["drain"] = {
            "first_delivery_s": round(first, 2) if first is not None else None,
            "window_s": round(window, 1),
            "delivered": sent1 - sent0,
            "delivered_per_s": round((sent1 - sent0) / window, 1),
            "qmgr_peak_rss_mb": round(max(rss), 1) if rss else None,
            "qmgr_rss_samples": len(rss),
        }
    finally:
        target.stop()
        sinks.stop()
        probe_sink.stop()
        subprocess.run(["rm", "-rf", str(top)], check=False)
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--drain-seconds", type=float, default=120.0)
    ap.add_argument("--json", help="write the result here too")
    args = ap.parse_args()
    result = run(args)
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
