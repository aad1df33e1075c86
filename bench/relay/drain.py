"""Delivery-side benchmark: drain a full incoming queue through qmgr and the smtp client.

Usage:
    python bench/relay/drain.py [--messages 5000] [--size 4096] [--targets mta,postfix]
                                [--repeat N] [--json FILE]

The relay benchmark (run.py) measures the whole path with the load
generator, smtpd, qmgr and the smtp client all fighting for two cores. This
one takes the intake out of the picture, to see the delivery side alone:

  1. the MTA runs without its queue manager, and smtp-source fills the
     incoming queue with --messages messages (one recipient each);
  2. the MTA stops; the queue manager's line goes back into master.cf;
  3. the MTA starts again: qmgr finds the whole queue at once and relays
     it through the smtp client to Postfix's smtp-sink on 127.0.0.1.

Reported per run: the seconds from the start of step 3 to the first
delivery (start-up and the queue manager's first scan), then messages
delivered per second from the first delivery until the queue is empty, and
CPU milliseconds per message of each of the MTA's programs over that same
time (qmgr, smtp, scache, ...; "exited" is the time of processes that
ended during the run, which only their master's counters keep). Postfix goes
through the same steps in the same run when it is installed and this runs
as root. With --repeat N the targets run N times, interleaved, and the
table shows medians.

Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
from loadgen import (  # noqa: E402 - after the path is set
    PostfixInstance,
    cpu_by_service,
    free_port,
    proc_tree_cpu,
    service_cpu,
    smtp_source,
)
from run import TARGETS, ProbeSink, SmtpSinks, routing  # noqa: E402

QMGR_LINES = ("qmgr fifo n - n 300 1 qmgr\n", "qmgr unix n - n 300 1 qmgr\n")


def without_qmgr(master_cf: Path) -> str:
    """Take the queue manager out of master.cf; return the line taken."""
    text = master_cf.read_text()
    for line in QMGR_LINES:
        if line in text:
            master_cf.write_text(text.replace(line, ""))
            return line
    raise SystemExit(f"{master_cf}: no qmgr line")


def run_one(name: str, messages: int, size: int) -> dict:
    top = Path(tempfile.mkdtemp(prefix=f"drain-{name}-"))
    os.chmod(top, 0o755)  # Postfix's daemons run as postfix and must reach the spool
    sinks = SmtpSinks(1)
    probe_sink = ProbeSink(None)  # routing() wants its port; nothing is sent to it
    sinks.start()
    probe_sink.start()
    transport, alias, recipient = routing(sinks, probe_sink.port, 1)
    port = free_port()
    target = TARGETS[name](top, port, transport, alias)
    master_cf = target.etc / "master.cf"
    qmgr_line = without_qmgr(master_cf)
    main_cf = target.etc / "main.cf"
    settings = main_cf.read_text()
    try:
        # no queue manager hands out flow tokens during the fill: without
        # this, each cleanup would wait in_flow_delay (1s) per message
        main_cf.write_text(settings + "in_flow_delay = 0s\n")
        target.start()
        smtp_source(port, 20, messages, size, recipient)
        target.stop()
        main_cf.write_text(settings)
        with open(master_cf, "a") as f:
            f.write(qmgr_line)
        start = time.perf_counter()
        target.start()
        # the clock starts at the first delivery: start-up (the master, the
        # queue manager's first scan) is reported apart, not spread over the rate
        deadline = time.monotonic() + 120
        while target.queued() >= messages and time.monotonic() < deadline:
            time.sleep(0.05)  # a scan of the whole queue is not free either
        first = time.perf_counter()
        left = target.queued()
        before = service_cpu(target.pids())
        tree0 = proc_tree_cpu(target.pids())
        deadline = time.monotonic() + 600
        while not target.queue_empty() and time.monotonic() < deadline:
            time.sleep(0.01)
        drained = target.queue_empty()
        elapsed = time.perf_counter() - first
        tree = proc_tree_cpu(target.pids()) - tree0
        by_program = cpu_by_service(before, service_cpu(target.pids()), left, tree)
    finally:
        target.stop()
        sinks.stop()
        probe_sink.stop()
        shutil.rmtree(top, ignore_errors=True)
    delivery = {k: v for k, v in by_program.items() if k != "smtpd"}
    return {
        "target": name,
        "messages": messages,
        "size": size,
        "startup_s": round(first - start, 2),
        "measured": left,
        "delivered_per_s": round(left / elapsed, 1) if drained else 0.0,
        "drained": drained,
        "cpu_ms_per_msg": round(sum(delivery.values()), 3),
        "cpu_ms_by_program": delivery,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--targets", default="mta,postfix")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--json", help="write the results here too")
    args = ap.parse_args()
    names = [n for n in args.targets.split(",") if n]
    if "postfix" in names and not PostfixInstance.available():
        print("Postfix is not installed or this is not root: mta only", file=sys.stderr)
        names.remove("postfix")
    rows = []
    for run in range(args.repeat):
        for name in names:
            row = run_one(name, args.messages, args.size)
            row["run"] = run
            print(json.dumps(row), flush=True)
            rows.append(row)
    print(
        f"\n{'target':8s} {'start s':>8s} {'deliv/s':>9s} {'cpu ms/msg':>11s}  by program (medians)"
    )
    for name in names:
        mine = [r for r in rows if r["target"] == name]
        rate = statistics.median(r["delivered_per_s"] for r in mine)
        startup = statistics.median(r["startup_s"] for r in mine)
        cpu = statistics.median(r["cpu_ms_per_msg"] for r in mine)
        programs = sorted({p for r in mine for p in r["cpu_ms_by_program"]})
        each = {
            p: round(statistics.median(r["cpu_ms_by_program"].get(p, 0.0) for r in mine), 3)
            for p in programs
        }
        print(f"{name:8s} {startup:8.2f} {rate:9.1f} {cpu:11.3f}  {each}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
