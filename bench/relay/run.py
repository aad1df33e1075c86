"""End-to-end relay benchmark: smtp-source -> MTA -> queue -> smtp client -> smtp-sink.

Usage:
    python bench/relay/run.py [--sessions 10 50] [--messages 3000] [--size 4096]
                              [--rcpts 1] [--targets mta,postfix] [--plot FILE.png]
                              [--json FILE] [--repeat N]
                              [--tls [--per-connection N] [--postfix-tls-reuse]]

For each target and session count, Postfix's smtp-source sends --messages
messages of --size bytes to the MTA on 127.0.0.1, which relays them through
its queue manager and SMTP client to Postfix's smtp-sink on 127.0.0.1. With
--rcpts 100 every message has 100 recipients spread over ten domains
(d0..d9.bench.example by the last digit of the recipient, through a regexp
virtual_alias_maps), each domain relayed to its own sink, so the scheduler
juggles ten destinations.

A probe thread sends one message at a time to a separate domain whose relay
is a small aiosmtpd sink inside this script; the time from the 250 reply to
the probe sink receiving the message is the delivery latency (p50, p99).

Reported per run: messages/second accepted (while smtp-source ran) and
delivered (until the queue is empty), latency, CPU seconds per message of all
the MTA's processes, and peak memory (sum of RSS over the MTA's processes,
sampled every 0.2 s). When Postfix is installed and this runs as root, the
same load goes through a private Postfix instance configured the same way, in
the same run; --plot draws delivered messages/second against sessions for
both (needs matplotlib).

--targets mta,mta-bulk,postfix adds mta with the bulk sender's features
on (bulk_case.py: a suppression list of 100,000 entries, the event log, an
egress pool of two source addresses with warm-up counting), to show what
they cost. With --dkim, --targets mta,mta-milter,postfix adds mta signing
through the same OpenDKIM milter as Postfix (dkim_case.py).

With --repeat N every target runs N times, interleaved (mta, postfix, mta,
...), and the table shows the median of each figure.

With --tls both MTAs offer STARTTLS and relay with smtp_tls_security_level
= encrypt, with the same test certificates; the load comes from
tls_source.py and the mail goes to tls_sink.py instead of Postfix's tools,
which have no TLS (see tls_case.py). The table then adds handshakes per
second in and out, how many handshakes resumed a session on each side,
and the CPU per message of the load client and of the sink.

Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import smtplib
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from bulk_case import BulkSetup  # noqa: E402
from dkim_case import DkimSetup  # noqa: E402
from loadgen import (  # noqa: E402 - after the path is set
    SENDER,
    MtaInstance,
    PostfixInstance,
    cpu_by_service,
    device_flushes,
    free_port,
    percentile,
    proc_tree_cpu,
    service_cpu,
    smtp_source,
    wait_port,
)
from tls_case import TlsSetup, TlsSinks, tls_figures, tls_load  # noqa: E402

ROOT = HERE.parent.parent
DOMAINS = 10  # destinations in the --rcpts > 1 case
PROBE_DOMAIN = "probe.bench.example"


# ---------------------------------------------------------------- sinks
class SmtpSinks:
    """Postfix's smtp-sink processes on 127.0.0.1, one per port."""

    def __init__(self, count: int) -> None:
        self.ports = [free_port() for _ in range(count)]
        self.procs: list[subprocess.Popen] = []

    def start(self) -> None:
        user = ["-u", "nobody"] if os.getuid() == 0 else []
        for port in self.ports:
            self.procs.append(
                subprocess.Popen(
                    ["smtp-sink", *user, f"127.0.0.1:{port}", "1024"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        for port in self.ports:
            wait_port(port)

    def stop(self) -> None:
        for p in self.procs:
            p.terminate()
            p.wait(10)


class ProbeSink:
    """An aiosmtpd sink that notes when each probe message arrives."""

    def __init__(self, tls_context=None) -> None:
        from aiosmtpd.controller import Controller

        self.arrived: dict[str, float] = {}
        self.signed = 0  # probes that came with a DKIM-Signature (--dkim)

        class Handler:
            async def handle_DATA(inner, server, session, envelope):  # noqa: N805
                if envelope.content.startswith(b"DKIM-Signature:") or (
                    b"\nDKIM-Signature:" in envelope.content
                ):
                    self.signed += 1
                for line in envelope.content.splitlines():
                    if line.startswith(b"X-Probe: "):
                        self.arrived[line[9:].decode().strip()] = time.perf_counter()
                        break
                return "250 2.0.0 Ok"

        self.port = free_port()
        self.controller = Controller(
            Handler(), hostname="127.0.0.1", port=self.port, tls_context=tls_context
        )

    def start(self) -> None:
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()


class Probe(threading.Thread):
    """Sends one message at a time to the probe domain; notes each 250."""

    def __init__(self, port: int, size: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.size = size
        self.sent: dict[str, float] = {}
        self.stop_flag = threading.Event()

    def run(self) -> None:
        n = 0
        try:
            with smtplib.SMTP("127.0.0.1", self.port, timeout=60) as s:
                while not self.stop_flag.is_set():
                    n += 1
                    tag = f"p{n}"
                    body = (
                        f"From: <{SENDER}>\r\nTo: <x@{PROBE_DOMAIN}>\r\nX-Probe: {tag}\r\n"
                        "Subject: probe\r\n\r\n" + "x" * 76 + "\r\n"
                    ).encode() * 1
                    s.sendmail(SENDER, [f"x@{PROBE_DOMAIN}"], body)
                    self.sent[tag] = time.perf_counter()
                    time.sleep(0.02)
        except (OSError, smtplib.SMTPException):
            pass


# ---------------------------------------------------------------- targets
def routing(sinks: SmtpSinks, probe_port: int, rcpts: int) -> tuple[str, str, str]:
    """transport_maps, virtual_alias_maps (regexp source) and the recipient to load."""
    # regexp transport tables see the whole address, not the domain alone
    lines = [f"/@{PROBE_DOMAIN.replace('.', '[.]')}$/ smtp:[127.0.0.1]:{probe_port}"]
    # smtp-source's first recipient has no number; notices go back to load.example
    lines.append(f"/@(load|bench)[.]example$/ smtp:[127.0.0.1]:{sinks.ports[0]}")
    alias = ""
    if rcpts > 1:
        for i, port in enumerate(sinks.ports):
            lines.append(f"/@d{i}[.]bench[.]example$/ smtp:[127.0.0.1]:{port}")
        alias = "/^(.*)([0-9])sink@bench[.]example$/ ${1}${2}sink@d${2}.bench.example\n"
    return "\n".join(lines) + "\n", alias, "sink@bench.example"


class Target:
    name = ""
    queue: Path

    def pids(self) -> list[int]: ...

    def queue_files(self) -> Iterator[str]:
        """The names of the messages in the queue (maildrop, incoming, active, deferred)."""
        for sub in ("incoming", "active", "deferred", "maildrop"):
            for _, _, files in os.walk(self.queue / sub):
                yield from (f for f in files if not f.startswith("."))

    def queue_empty(self) -> bool:
        return next(self.queue_files(), None) is None

    def queued(self) -> int:
        return sum(1 for _ in self.queue_files())


def routing_files(etc: Path, transport: str, alias: str) -> str:
    """Write the routing tables; return their main.cf lines."""
    (etc / "transport").write_text(transport)
    (etc / "virtual").write_text(alias)
    lines = f"mydestination =\nrelay_domains =\ntransport_maps = regexp:{etc / 'transport'}\n"
    return lines + (f"virtual_alias_maps = regexp:{etc / 'virtual'}\n" if alias else "")


class MtaTarget(MtaInstance, Target):
    def __init__(
        self,
        top: Path,
        port: int,
        transport: str,
        alias: str,
        main_cf: str = "",
        master_cf: str = "",
    ) -> None:
        super().__init__(
            top,
            port,
            "",
            f"127.0.0.1:{port} inet n - n - - smtpd\n"
            "cleanup unix n - n - 0 cleanup\n"
            "qmgr fifo n - n 300 1 qmgr\n"
            "smtp unix - - n - - smtp\n"
            "error unix - - n - - error\n"
            "retry unix - - n - - error\n"
            "scache unix - - n - 1 scache\n"
            "proxymap unix - - n - - proxymap\n" + master_cf,
        )
        with open(self.etc / "main.cf", "a") as f:
            f.write(routing_files(self.etc, transport, alias) + main_cf)


class PostfixTarget(PostfixInstance, Target):
    def __init__(
        self,
        top: Path,
        port: int,
        transport: str,
        alias: str,
        main_cf: str = "",
        master_cf: str = "",
    ) -> None:
        super().__init__(
            top,
            port,
            "",
            f"127.0.0.1:{port} inet n - n - - smtpd\n"
            "cleanup unix n - n - 0 cleanup\n"
            "rewrite unix - - n - - trivial-rewrite\n"
            "qmgr unix n - n 300 1 qmgr\n"
            "smtp unix - - n - - smtp\n"
            "relay unix - - n - - smtp\n"
            "error unix - - n - - error\n"
            "retry unix - - n - - error\n"
            "defer unix - - n - 0 bounce\n"
            "bounce unix - - n - 0 bounce\n"
            "trace unix - - n - 0 bounce\n"
            "verify unix - - n - 1 verify\n"
            "flush unix n - n 1000? 0 flush\n"
            "scache unix - - n - 1 scache\n"
            "anvil unix - - n - 1 anvil\n"
            "proxymap unix - - n - - proxymap\n"
            "postlog unix-dgram n - n - 1 postlogd\n" + master_cf,
        )
        with open(self.etc / "main.cf", "a") as f:
            f.write(routing_files(self.etc, transport, alias) + main_cf)


TARGETS = {
    "mta": MtaTarget,
    "mta-bulk": MtaTarget,
    "mta-milter": MtaTarget,  # with --dkim: OpenDKIM as mta's milter, as Postfix's
    "postfix": PostfixTarget,
}


# ---------------------------------------------------------------- measuring
def tree_rss(root_pids: list[int]) -> int:
    """Sum of resident memory (bytes) of root_pids and their descendants."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    page = os.sysconf("SC_PAGE_SIZE")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            statm = Path(f"/proc/{entry}/statm").read_text().split()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        pid, ppid = int(entry), int(fields[1])
        children.setdefault(ppid, []).append(pid)
        rss[pid] = int(statm[1]) * page
    total, todo = 0, list(root_pids)
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo.extend(children.get(pid, []))
    return total


class MemorySampler(threading.Thread):
    def __init__(self, pids: list[int]) -> None:
        super().__init__(daemon=True)
        self.pids = pids
        self.peak = 0
        self.stop_flag = threading.Event()

    def run(self) -> None:
        while not self.stop_flag.wait(0.2):
            self.peak = max(self.peak, tree_rss(self.pids))


def run_one(
    name: str,
    sessions: int,
    messages: int,
    size: int,
    rcpts: int,
    tls: int = 0,
    postfix_reuse: bool = False,
    reuse: bool = False,
    dkim: str = "",
) -> dict:
    """One run; with tls > 0, the TLS case with tls messages per inbound connection."""
    top = Path(tempfile.mkdtemp(prefix=f"relay-{name}-"))
    os.chmod(top, 0o755)  # Postfix's daemons run as postfix and must reach the spool
    count = DOMAINS if rcpts > 1 else 1
    setup = TlsSetup(top, postfix_reuse) if tls else None
    sinks = TlsSinks(count, setup, top) if setup else SmtpSinks(count)
    probe_sink = ProbeSink(setup.probe_context() if setup else None)
    sinks.start()
    probe_sink.start()
    transport, alias, recipient = routing(sinks, probe_sink.port, rcpts)
    port = free_port()
    extra = (setup.main_cf(name), setup.master_cf(name)) if setup else ("", "")
    signing = DkimSetup(top, dkim) if dkim else None
    if signing is not None:
        extra = (extra[0] + signing.main_cf(name), extra[1])
    bulk = BulkSetup(top) if name == "mta-bulk" else None
    if bulk is not None:
        extra = (extra[0] + bulk.main_cf(name), extra[1])
    target = TARGETS[name](top, port, transport, alias, *extra)

    def load(sessions: int, messages: int) -> dict | None:
        if setup is None:
            smtp_source(port, sessions, messages, size, recipient, rcpts, reuse)
            return None
        return tls_load(port, sessions, messages, size, recipient, tls, setup)

    try:
        if signing is not None:
            signing.start(name)  # Postfix's OpenDKIM milter, before Postfix
        helpers = signing.pids(name) if signing is not None else []
        target.start()
        load(2, 20)  # warm up
        deadline = time.monotonic() + 60
        while not target.queue_empty() and time.monotonic() < deadline:
            time.sleep(0.05)
        cpu0 = proc_tree_cpu(target.pids())
        helpers0 = proc_tree_cpu(helpers) if helpers else 0.0
        by_service0 = service_cpu(target.pids())
        flushes0 = device_flushes(top)
        memory = MemorySampler(target.pids())
        memory.start()
        probe = Probe(port, size)
        start = time.perf_counter()
        probe.start()
        source = load(sessions, messages)
        accepted = source["elapsed_s"] if source else time.perf_counter() - start
        probe.stop_flag.set()
        probe.join(60)
        deadline = time.monotonic() + 180  # mail still queued then counts as not drained
        while not target.queue_empty() and time.monotonic() < deadline:
            time.sleep(0.01)
        drained = target.queue_empty()
        delivered = time.perf_counter() - start
        time.sleep(0.5)  # the probe sink may still be taking the last probe
        memory.stop_flag.set()
        memory.join(5)
        cpu = proc_tree_cpu(target.pids()) - cpu0
        helpers_cpu = proc_tree_cpu(helpers) - helpers0 if helpers else 0.0
        by_service = service_cpu(target.pids())
        flushes1 = device_flushes(top)
        events = bulk.event_lines() if bulk is not None else None
    finally:
        target.stop()
        if signing is not None:
            signing.stop()
        sinks.stop()
        sink_stats = sinks.stats() if setup else {}
        probe_sink.stop()
        shutil.rmtree(top, ignore_errors=True)
    latencies = [
        probe_sink.arrived[tag] - t for tag, t in probe.sent.items() if tag in probe_sink.arrived
    ]
    total = messages + len(probe.sent)
    row = {
        "target": name,
        "sessions": sessions,
        "messages": messages,
        "rcpts": rcpts,
        "size": size,
        "reuse": reuse,
        "accepted_per_s": round(messages / accepted, 1),
        "delivered_per_s": round(messages / delivered, 1) if drained else 0.0,
        "drained": drained,
        "p50_ms": round(1000 * percentile(latencies, 0.50), 1),
        "p99_ms": round(1000 * percentile(latencies, 0.99), 1),
        "probes": f"{len(latencies)}/{len(probe.sent)}",
        "cpu_ms_per_msg": round(1000 * (cpu + helpers_cpu) / total, 3),
        "peak_rss_mb": round(memory.peak / 2**20, 1),
        # every flush of the spool's disk over the run, whoever asked for it
        "flushes_per_msg": (
            round((flushes1 - flushes0) / total, 2) if flushes0 is not None else None
        ),
        "cpu_ms_by_program": cpu_by_service(by_service0, by_service, total, cpu),
    }
    if signing is not None:
        row["dkim"] = dkim
        row["probes_signed"] = f"{probe_sink.signed}/{len(latencies)}"
        if helpers:
            row["cpu_ms_by_program"]["opendkim"] = round(1000 * helpers_cpu / total, 3)
    if setup:
        row.update(tls_figures(row, source, sink_stats, tls))
    if bulk is not None:
        row["events"] = events
    return row


def plot(results: list[dict], path: str) -> None:
    """Delivered messages/second against sessions, one panel per recipients-per-message."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = sorted({r["rcpts"] for r in results})
    fig, axes = plt.subplots(1, len(kinds), figsize=(5.5 * len(kinds), 4), squeeze=False)
    for ax, rcpts in zip(axes[0], kinds, strict=True):
        for name in sorted({r["target"] for r in results}):
            rows = [r for r in results if r["target"] == name and r["rcpts"] == rcpts]
            if rows:
                ax.plot(
                    [r["sessions"] for r in rows],
                    [r["delivered_per_s"] for r in rows],
                    marker="o",
                    label=name,
                )
        ax.set_xlabel("concurrent smtp-source sessions")
        ax.set_ylabel("messages delivered per second")
        ax.set_title(f"{rcpts} recipient{'s' if rcpts > 1 else ''} per message")
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.suptitle("End-to-end relay: smtp-source -> MTA -> smtp-sink (same machine, same run)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def medians(rows: list[dict]) -> list[dict]:
    """One row per target, recipients and sessions: the median of each number."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["rcpts"], r["sessions"], r["target"]), []).append(r)
    out = []
    for group in groups.values():
        row = dict(group[0], runs=len(group))
        for key, value in group[0].items():
            if isinstance(value, float):  # the measured figures; counts and settings are ints
                row[key] = round(statistics.median(r[key] for r in group), 3)
            elif isinstance(value, dict):  # CPU by program
                names = sorted({k for r in group for k in r[key]})
                row[key] = {
                    k: round(statistics.median(r[key].get(k, 0.0) for r in group), 3) for k in names
                }
        for key in ("in_reused", "out_reused"):  # "reused/handshakes": summed over the runs
            if key in row:
                parts = [tuple(map(int, r[key].split("/"))) for r in group]
                row[key] = f"{sum(p[0] for p in parts)}/{sum(p[1] for p in parts)}"
        row["drained"] = all(r["drained"] for r in group)
        out.append(row)
    return out


def print_tls(results: list[dict]) -> None:
    head = ("target", "sess", "deliv/s", "in hs/s", "in reused", "out hs/s", "out reused",
            "cpu ms", "src ms", "sink ms")  # fmt: skip
    print("{:8} {:>4} {:>8} {:>8} {:>11} {:>8} {:>11} {:>7} {:>7} {:>7}".format(*head))
    for r in results:
        print(
            f"{r['target']:8} {r['sessions']:>4} {r['delivered_per_s']:>8} "
            f"{r['in_handshakes_per_s']:>8} {r['in_reused']:>11} {r['out_handshakes_per_s']:>8} "
            f"{r['out_reused']:>11} {r['cpu_ms_per_msg']:>7} {r['source_cpu_ms_per_msg']:>7} "
            f"{r['sink_cpu_ms_per_msg']:>7}"
        )
    print("\nCPU ms per message by program:")
    for r in results:
        parts = ", ".join(f"{k} {v}" for k, v in r["cpu_ms_by_program"].items())
        print(f"{r['target']:8} {r['sessions']:>4}  {parts}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--rcpts", type=int, nargs="+", default=[1])
    parser.add_argument("--targets", default="mta,postfix")
    parser.add_argument(
        "--tls", action="store_true", help="STARTTLS inbound (tls_source.py), encrypt outbound"
    )
    parser.add_argument(
        "--per-connection", type=int, default=1, help="with --tls: messages per inbound connection"
    )
    parser.add_argument(
        "--postfix-tls-reuse",
        action="store_true",
        help="with --tls: smtp_tls_connection_reuse = yes for Postfix (tlsproxy)",
    )
    parser.add_argument(
        "--dkim",
        choices=("rsa", "ed25519"),
        help="sign every message: mta in cleanup, Postfix through OpenDKIM as a milter",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="smtp-source -d: every session sends all its messages over one connection",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="interleaved runs of every target; medians at the end"
    )
    parser.add_argument("--plot", help="draw delivered msg/s against sessions to this PNG")
    parser.add_argument("--json", help="write the results here too")
    parser.add_argument(
        "--replot", nargs="+", metavar="JSON", help="only draw --plot from earlier --json files"
    )
    args = parser.parse_args()
    if args.replot:
        rows = [row for f in args.replot for row in json.loads(Path(f).read_text())]
        plot(rows, args.plot or "relay.png")
        return 0
    for tool in ("openssl",) if args.tls else ("smtp-source", "smtp-sink"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} (Debian package postfix) is needed")
    tls = max(1, args.per_connection) if args.tls else 0
    names = args.targets.split(",")
    if "postfix" in names and not PostfixTarget.available():
        print("postfix: skipped (not installed, or not root)", file=sys.stderr)
        names.remove("postfix")
    for name in [n for n in names if DkimSetup.uses_milter(n)]:
        if args.dkim and not DkimSetup.available():
            print(
                f"{name}: skipped (--dkim needs opendkim, Debian package opendkim)", file=sys.stderr
            )
            names.remove(name)
    results = []
    for rcpts in args.rcpts:
        for sessions in args.sessions:
            for run in range(args.repeat):  # interleaved: host drift hits every target
                for name in names:
                    row = run_one(
                        name,
                        sessions,
                        args.messages,
                        args.size,
                        rcpts,
                        tls,
                        args.postfix_tls_reuse,
                        args.reuse,
                        args.dkim or "",
                    )
                    row["run"] = run
                    results.append(row)
                    print(json.dumps(row), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    if args.repeat > 1:
        results = medians(results)
    if args.plot and results:
        plot(results, args.plot)
    print()
    if tls:
        print_tls(results)
        return 0
    head = ("target", "rcpt", "sess", "accept/s", "deliv/s", "p50 ms", "p99 ms", "cpu ms", "MB",
            "flush/msg")  # fmt: skip
    print("{:8} {:>4} {:>4} {:>9} {:>9} {:>8} {:>8} {:>8} {:>7} {:>9}".format(*head))
    for r in results:
        flushes = r.get("flushes_per_msg")
        print(
            f"{r['target']:8} {r['rcpts']:>4} {r['sessions']:>4} {r['accepted_per_s']:>9} "
            f"{r['delivered_per_s']:>9} {r['p50_ms']:>8} {r['p99_ms']:>8} "
            f"{r['cpu_ms_per_msg']:>8} {r['peak_rss_mb']:>7} {'-' if flushes is None else flushes:>9}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
