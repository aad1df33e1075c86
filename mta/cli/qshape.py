"""cli.qshape - where the backlog is: queue messages by domain and age (qshape)

SYNOPSIS
    mta qshape [-c CONFIG_DIR] [-s] [-p] [-m MIN_SUBDOMAINS] [-b BUCKETS]
               [-t MINUTES] [-l] [-w WIDTH] [--plot FILE.png] [QUEUE ...]

DESCRIPTION
    Counts the recipients still to be delivered in the named queues
    (incoming and active when none is named) by recipient domain, or
    with -s the messages by sender domain (MAILER-DAEMON for the null
    sender), and spreads each count over age buckets, as Postfix's
    qshape does. The first bucket holds what arrived less than -t
    minutes ago (5); each next bucket's limit doubles (with -l it grows
    by -t instead); -b sets the number of buckets (10); the last column
    is everything older. The table is the one qshape prints: a header
    of bucket limits, a TOTAL row, then one row per domain, largest
    first, right-aligned to the terminal width (-w, 80 at least).

    -p adds rows for parent domains (".example.com", never a top-level
    domain) that have at least -m distinct subdomains (5) in the queue.

    --plot FILE.png draws the same table as a stacked bar chart (needs
    matplotlib, the "bench" extra).

SECURITY
    Reads queue files, so it runs as root or mail_owner (or the user of
    the embedded instance). Never writes to the queue.
"""

from __future__ import annotations

import sys
import time
from collections import Counter, defaultdict

from mta.cli.common import load_or_report, make_parser
from mta.qmgr.scan import iter_queue
from mta.queue.queue_file import QueueFileError, queue_layout, read_queue_file

DEFAULT_QUEUES = ("incoming", "active")
QUEUE_NAMES = ("maildrop", "incoming", "active", "deferred", "hold")
MIN_DOMAIN_WIDTH = 18
MIN_COLUMN_WIDTH = 2


def bucket_limits(count: int, minutes: int, linear: bool) -> list[int]:
    """Upper age limits in minutes of every bucket but the last, open one."""
    return [minutes * (i + 1) if linear else minutes << i for i in range(count - 1)]


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower() if "@" in address else ""


def parents(domain: str) -> list[str]:
    """ ".b.c" for "a.b.c": every parent but the top-level domain."""
    labels = domain.split(".")
    return ["." + ".".join(labels[i:]) for i in range(1, len(labels) - 1)]


class Shape:
    """Counts per domain and age bucket."""

    def __init__(self, limits: list[int]) -> None:
        self.limits = limits
        self.rows: dict[str, list[int]] = defaultdict(lambda: [0] * (len(limits) + 1))
        self.total = [0] * (len(limits) + 1)

    def bucket(self, age_minutes: float) -> int:
        for i, limit in enumerate(self.limits):
            if age_minutes < limit:
                return i
        return len(self.limits)

    def add(self, domain: str, age_minutes: float, n: int = 1) -> None:
        b = self.bucket(age_minutes)
        self.rows[domain][b] += n
        self.total[b] += n

    def add_parents(self, min_subdomains: int) -> None:
        """Rows for parent domains with at least min_subdomains subdomains."""
        subs: dict[str, set[str]] = defaultdict(set)
        for domain in list(self.rows):
            for parent in parents(domain):
                subs[parent].add(domain)
        for parent, members in subs.items():
            if len(members) >= min_subdomains:
                row = [0] * len(self.total)
                for domain in members:
                    row = [a + b for a, b in zip(row, self.rows[domain], strict=True)]
                self.rows[parent] = row


def collect(cfg, queues, senders: bool, limits: list[int], now: float | None = None) -> Shape:
    now = time.time() if now is None else now
    shape = Shape(limits)
    queue_dir, depth, hashed = queue_layout(cfg)
    for queue in queues:
        for _qid, path in iter_queue(queue_dir, queue, depth, hashed):
            try:
                msg = read_queue_file(path)
            except (OSError, QueueFileError):
                continue
            age = max(0.0, now - (msg.arrival or now)) / 60
            if senders:
                shape.add(domain_of(msg.sender) if msg.sender else "MAILER-DAEMON", age)
                continue
            counts = Counter(domain_of(r.address) for r in msg.recipients if not r.done)
            for domain, n in counts.items():
                shape.add(domain, age, n)
    return shape


def render(shape: Shape, width: int, labels: list[str]) -> str:
    rows = sorted(shape.rows.items(), key=lambda kv: (-sum(kv[1]), kv[0]))
    header = ["T", *labels]
    body = [("TOTAL", shape.total)] + [(d, counts) for d, counts in rows]
    widths = [len(h) for h in header]
    for _, counts in body:
        values = [sum(counts), *counts]
        widths = [max(w, len(str(v))) for w, v in zip(widths, values, strict=True)]
    widths = [max(MIN_COLUMN_WIDTH, w) for w in widths]
    domain_width = max(MIN_DOMAIN_WIDTH, width - sum(w + 1 for w in widths))
    for name, _ in body:
        domain_width = max(domain_width, len(name))

    def line(first: str, cells: list) -> str:
        out = f"{first:>{domain_width}}"
        return out + "".join(f" {c!s:>{w}}" for c, w in zip(cells, widths, strict=True))

    lines = [line("", header)]
    lines += [line(name, [sum(counts), *counts]) for name, counts in body]
    return "\n".join(lines) + "\n"


def plot(shape: Shape, labels: list[str], path: str, senders: bool, top: int = 10) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(shape.rows.items(), key=lambda kv: (-sum(kv[1]), kv[0]))[:top]
    fig, ax = plt.subplots(figsize=(9, 0.5 + 0.45 * max(1, len(rows))))
    left = [0] * len(rows)
    names = [name for name, _ in rows]
    for b, label in enumerate(labels):
        values = [counts[b] for _, counts in rows]
        ax.barh(names, values, left=left, label=f"< {label} min" if "+" not in label else label)
        left = [a + v for a, v in zip(left, values, strict=True)]
    ax.invert_yaxis()
    ax.set_xlabel("messages waiting" if senders else "recipients waiting")
    ax.set_title("queue shape by domain and age")
    ax.legend(fontsize="small", ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv: list[str], command: str = "qshape") -> int:
    parser = make_parser(command, "Show the queue by domain and age, as qshape does.")
    parser.add_argument("-s", action="store_true", help="sender domains instead of recipients")
    parser.add_argument("-p", action="store_true", help="add parent domain rows")
    parser.add_argument("-m", type=int, default=5, metavar="MIN", help="subdomains for -p (5)")
    parser.add_argument("-b", type=int, default=10, metavar="BUCKETS", help="buckets (10)")
    parser.add_argument("-t", type=int, default=5, metavar="MINUTES", help="first bucket (5)")
    parser.add_argument("-l", action="store_true", help="buckets grow linearly, not doubling")
    parser.add_argument("-w", type=int, default=80, metavar="WIDTH", help="terminal width (80)")
    parser.add_argument("--plot", metavar="FILE.png", help="also draw the table as a chart")
    parser.add_argument("queues", nargs="*", metavar="QUEUE", help=", ".join(QUEUE_NAMES))
    args = parser.parse_args(argv)
    if args.b < 1 or args.t < 1:
        parser.error("-b and -t must be positive")
    for queue in args.queues:
        if queue not in QUEUE_NAMES:
            parser.error(f"unknown queue: {queue} (one of {', '.join(QUEUE_NAMES)})")
    cfg = load_or_report(args, command)
    if cfg is None:
        return 1
    limits = bucket_limits(args.b, args.t, args.l)
    labels = [str(x) for x in limits] + [f"{limits[-1] if limits else 0}+"]
    shape = collect(cfg, tuple(args.queues) or DEFAULT_QUEUES, args.s, limits)
    if args.p:
        shape.add_parents(args.m)
    sys.stdout.write(render(shape, max(80, args.w), labels))
    if args.plot:
        plot(shape, labels, args.plot, args.s)
    return 0
