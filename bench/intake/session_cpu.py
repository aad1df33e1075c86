"""smtpd's CPU per message, one process, rounds against smtp-source; for A/B of the session code.

Usage:
    python bench/intake/session_cpu.py [--sessions 50] [--messages 1000] [--rounds 7]
                                       [--spool tmpfs|disk] [--milter opendkim]
                                       [--json FILE]

One smtpd process (SmtpdServer and SmtpdSession on uvloop, as under the
master, cleanup in process, fsyncs in its worker threads) listens on
127.0.0.1; Postfix's smtp-source sends --rounds rounds of --messages
4 KB messages, one recipient each. After every round the server's own
CPU time (user + system of all its threads, from /proc) is read, so a
round costs what the server spent on exactly those messages.

Reported: CPU microseconds per message, the minimum and the median over
the rounds (the first round, which warms caches and imports, is left
out), and the split into user and system time. On a host shared with
other machines CPU time moves with their load; the minimum of several
short rounds moves least, so compare minimums of runs made side by
side (paired), never a figure against an older one.

--spool tmpfs (the default) puts the queue on /dev/shm: fsync costs
nothing there, so the figure is the code's cost without the disk's;
--spool disk puts it under $TMPDIR as the other benchmarks do. Neither
is a throughput claim: bench/intake/run.py and bench/relay/run.py are.

--milter opendkim starts Debian's OpenDKIM (bench/relay/dkim_case.py,
2048-bit RSA) as the server's smtpd_milters, so the figure is smtpd's
side of the milter protocol on top of its own work; OpenDKIM's CPU is
not counted.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "relay"))
from dkim_case import DkimSetup  # noqa: E402 - after the path is set
from loadgen import MTA_MAIN_CF, smtp_source, wait_port  # noqa: E402 - after the path is set

from mta.queue.paths import QUEUE_NAMES  # noqa: E402

SERVER = r"""
import asyncio, socket, sys
from mta import log
from mta.config import Config
from mta.master.mail_server import new_event_loop
from mta.smtpd.server import SmtpdServer
from mta.smtpd.session import SmtpdSession

cfg = Config(sys.argv[1])
log.init("smtpd", cfg)
loop = new_event_loop()
asyncio.set_event_loop(loop)
log.start_background()
server = SmtpdServer(cfg)
sock = socket.socket()
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("127.0.0.1", 0))
sock.listen(1024)
loop.run_until_complete(loop.create_server(lambda: SmtpdSession(server), sock=sock, backlog=1024))
print(sock.getsockname()[1], flush=True)
loop.run_forever()
"""


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process and its threads."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / ticks, int(fields[12]) / ticks


def make_instance(top: Path, extra: str = "") -> Path:
    cdir, spool = top / "etc", top / "spool"
    for name in (*QUEUE_NAMES, "private", "public", "pid"):
        (spool / name).mkdir(parents=True, exist_ok=True)
    (top / "data").mkdir(exist_ok=True)
    cdir.mkdir()
    (cdir / "main.cf").write_text(
        MTA_MAIN_CF
        # no queue manager hands back flow tokens here: no in_flow_delay pacing
        + "in_flow_delay = 0s\n"
        + f"queue_directory = {spool}\ndata_directory = {top / 'data'}\n"
        + f"maillog_file = {top / 'maillog'}\nmail_owner = {pwd.getpwuid(os.getuid()).pw_name}\n"
        + extra
    )
    (cdir / "master.cf").write_text("")
    return cdir


def clear_incoming(top: Path) -> None:
    incoming = top / "spool" / "incoming"
    shutil.rmtree(incoming)
    incoming.mkdir()


def run(args) -> dict:
    base = "/dev/shm" if args.spool == "tmpfs" else None
    top = Path(tempfile.mkdtemp(prefix="session-cpu-", dir=base))
    proc = dkim = None
    try:
        extra = ""
        if args.milter == "opendkim":
            dkim = DkimSetup(top, "rsa")
            dkim.start("mta-milter")
            extra = dkim.main_cf("mta-milter")
        cdir = make_instance(top, extra)
        proc = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(cdir)], stdout=subprocess.PIPE, text=True
        )
        port = int(proc.stdout.readline())
        wait_port(port)
        rounds = []
        for _ in range(args.rounds + 1):
            user0, sys0 = cpu_seconds(proc.pid)
            start = time.monotonic()
            smtp_source(port, args.sessions, args.messages, args.size)
            wall = time.monotonic() - start
            user1, sys1 = cpu_seconds(proc.pid)
            rounds.append(
                {
                    "user_us": (user1 - user0) / args.messages * 1e6,
                    "sys_us": (sys1 - sys0) / args.messages * 1e6,
                    "msg_per_s": args.messages / wall,
                }
            )
            clear_incoming(top)  # each round starts from an empty queue
        rounds = rounds[1:]
        totals = [r["user_us"] + r["sys_us"] for r in rounds]
        best = min(range(len(rounds)), key=lambda i: totals[i])
        return {
            "sessions": args.sessions,
            "messages": args.messages,
            "spool": args.spool,
            "milter": args.milter,
            "cpu_us_min": round(totals[best], 1),
            "cpu_us_median": round(statistics.median(totals), 1),
            "user_us_at_min": round(rounds[best]["user_us"], 1),
            "sys_us_at_min": round(rounds[best]["sys_us"], 1),
            "msg_per_s_median": round(statistics.median(r["msg_per_s"] for r in rounds), 1),
            "rounds": rounds,
        }
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
        if dkim is not None:
            dkim.stop()
        shutil.rmtree(top, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--spool", choices=("tmpfs", "disk"), default="tmpfs")
    parser.add_argument("--milter", choices=("none", "opendkim"), default="none")
    parser.add_argument("--json", help="write the result here too")
    args = parser.parse_args()
    result = run(args)
    line = {k: v for k, v in result.items() if k != "rounds"}
    print(json.dumps(line))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
