"""Queue listing benchmark: mta queue -p / -j on a large deferred queue, beside
Postfix's postqueue -p / -j on a queue of the same shape, in the same run.

Usage: python bench/queue/listing.py [--messages N] [--json FILE]

mta's queue is written directly (QueueFileWriter, one defer log per message);
Postfix's is filled through its smtpd with defer_transports = smtp, so every
message waits in deferred/ with a reason, as in a real backlog. Each listing
runs 3 times; the table gives the median seconds, messages per second and the
listing process's peak RSS. Postfix needs root; without it only mta runs.
"""

from __future__ import annotations

import argparse
import json
import os
import smtplib
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from mta.bounce import logfile  # noqa: E402
from mta.common.dsn import ACTION_DELAYED, RecipientStatus  # noqa: E402
from mta.config import load_config  # noqa: E402
from mta.queue.queue_file import QueueFileWriter, Recipient  # noqa: E402
from tests.support import postfix  # noqa: E402
from tests.support.instance import make_instance  # noqa: E402
from tests.support.running import free_port, wait_for  # noqa: E402

BODY = b"Subject: backlog\n\n" + b"x" * 2000 + b"\n"
REASON = "connect to mx.remote.example[192.0.2.1]:25: Connection timed out"
RUNS = 3


def fill_mta(top: Path, n: int) -> str:
    cdir = make_instance(top)
    cfg = load_config(str(cdir))
    qdir = cfg.get("queue_directory")
    for i in range(n):
        w = QueueFileWriter(qdir, "deferred")
        rcpt = Recipient(address=f"r{i}@remote.example")
        w.write_envelope(f"s{i}@src.example", [rcpt], {})  # sets rcpt.offset
        w.write_content(BODY)
        qid = w.commit()
        st = RecipientStatus.of(rcpt, ACTION_DELAYED, "4.4.1", REASON)
        logfile.append(qdir, "defer", qid, [st])
    return str(cdir)


def fill_postfix(n: int):
    port = free_port()
    pf = postfix.PostfixInstance(port, "defer_transports = smtp\nrelayhost = [192.0.2.1]\n")
    pf.start()
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        for i in range(n):
            s.sendmail(f"s{i}@src.example", [f"r{i}@remote.example"], BODY.replace(b"\n", b"\r\n"))
    assert wait_for(lambda: pf.postqueue("-j").count("\n") >= n, 300)
    return pf


def timed(cmd: list[str], env=None) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of one run of cmd, its output thrown away."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, cmd)
    return elapsed, usage.ru_maxrss / 1024


def measure(label: str, cmd: list[str], n: int, env=None) -> dict:
    runs = [timed(cmd, env) for _ in range(RUNS)]
    secs = statistics.median(r[0] for r in runs)
    return {
        "target": label,
        "messages": n,
        "seconds": round(secs, 3),
        "msg_per_s": round(n / secs),
        "peak_rss_mb": round(max(r[1] for r in runs), 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--json", help="write the results here too")
    args = ap.parse_args()
    n = args.messages
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        cdir = fill_mta(Path(tmp), n)
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        mta = [sys.executable, "-m", "mta", "queue", "-c", cdir]
        results.append(measure("mta -p", [*mta, "-p"], n, env))
        results.append(measure("mta -j", [*mta, "-j"], n, env))
    if postfix.available():
        pf = fill_postfix(n)
        try:
            results.append(measure("postfix -p", ["postqueue", "-c", str(pf.etc), "-p"], n))
            results.append(measure("postfix -j", ["postqueue", "-c", str(pf.etc), "-j"], n))
        finally:
            pf.stop()
    print(f"{'target':<12} {'messages':>8} {'seconds':>8} {'msg/s':>8} {'peak MB':>8}")
    for r in results:
        print(
            f"{r['target']:<12} {r['messages']:>8} {r['seconds']:>8} "
            f"{r['msg_per_s']:>8} {r['peak_rss_mb']:>8}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
