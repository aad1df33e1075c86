"""cli.qshape - where the backlog is: queue messages by domain and age (qshape)

SYNOPSIS
    mta qshape [-c CONFIG_DIR] [-s] [-p] [-m MIN_SUBDOMAINS] [-b BUCKETS]
               [-t MINUTES] [-l] [-w WIDTH] [-N BATCH_MSGS] [-n TOP_DOMAINS]
               [--json] [--plot FILE.png] [QUEUE ...]

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

    On a terminal, as Postfix's qshape does, the table is shown every
    -N messages (1000) while the queue is read, so a large queue gives
    a usable picture early, and the intermediate and final tables show
    only the top -n domains (20). Output to a file or a pipe is the
    whole table, once.

    --json prints the same counts as one JSON object instead, for
    scripts: {"buckets": [labels], "total": {"total": N, "buckets":
    [...]}, "domains": [{"domain": D, "total": N, "buckets": [...]},
    ...]}, domains largest first.

    --plot FILE.png draws the same table as a stacked bar chart (needs
    matplotlib, the "bench" extra).

SECURITY
    Reads queue files, so it runs as root or mail_owner (or the user of
    the embedded instance). Never writes to the queue.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter, defaultdict

from mta.cli.common import load_or_report, make_parser
from mta.qmgr.scan import iter_queue
from mta.queue.queue_file import QueueFileError, queue_layout, read_envelope

DEFAULT_QUEUES = ("incoming", "active")
QUEUE_NAMES = ("maildrop", "incoming", "active", "deferred", "hold")
MIN_DOMAIN_WIDTH = 18
MIN_COLUMN_WIDTH = 2
CLEAR_SCREEN = "\033[H\033[2J"  # before each intermediate table on a terminal


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


def collect(
    cfg,
    queues,
    senders: bool,
    limits: list[int],
    now: float | None = None,
    batch: int = 0,
    progress=None,
) -> Shape:
    """Count the queues; progress(shape) after every batch messages when given."""
    now = time.time() if now is None else now
    shape = Shape(limits)
    queue_dir, depth, hashed = queue_layout(cfg)
    seen = 0
    for queue in queues:
        for _qid, path in iter_queue(queue_dir, queue, depth, hashed):
            try:
                env = read_envelope(path)
            except (OSError, QueueFileError):
                continue
            age = max(0.0, now - (env.arrival or now)) / 60
            if senders:
                shape.add(domain_of(env.sender) if env.sender else "MAILER-DAEMON", age)
            else:
                counts = Counter(domain_of(address) for _, address in env.pending)
                for domain, n in counts.items():
                    shape.add(domain, age, n)
            seen += 1
            if progress is not None and batch and seen % batch == 0:
                progress(shape)
    return shape


def ranked(shape: Shape) -> list[tuple[str, list[int]]]:
    """The domain rows, largest first (then by name)."""
    return sorted(shape.rows.items(), key=lambda kv: (-sum(kv[1]), kv[0]))


def render(shape: Shape, width: int, labels: list[str], top: int = 0) -> str:
    """The qshape table; top > 0 shows only that many domain rows."""
    rows = ranked(shape)
    if top > 0:
        rows = rows[:top]
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


def as_json(shape: Shape, labels: list[str]) -> str:
    """The counts as one JSON object (see the module docstring)."""
    doc = {
        "buckets": labels,
        "total": {"total": sum(shape.total), "buckets": shape.total},
        "domains": [
            {"domain": name, "total": sum(counts), "buckets": counts}
            for name, counts in ranked(shape)
        ],
    }
    return json.dumps(doc) + "\n"


def plot(shape: Shape, labels: list[str], path: str, senders: bool, top: int = 10) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = ranked(shape)[:top]
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
    parser.add_argument(
        "-N",
        type=int,
        default=1000,
        metavar="BATCH_MSGS",
        help="on a terminal, show the table every BATCH_MSGS messages (1000)",
    )
    parser.add_argument(
        "-n",
        type=int,
        default=20,
        metavar="TOP_DOMAINS",
        help="on a terminal, show only the top TOP_DOMAINS domains (20)",
    )
    parser.add_argument("--json", action="store_true", help="print the counts as JSON")
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
    width = max(80, args.w)
    terminal = sys.stdout.isatty() and not args.json
    top = args.n if terminal else 0

    shown = []  # intermediate tables drawn: the final one replaces them

    def show_batch(shape: Shape) -> None:
        sys.stdout.write(CLEAR_SCREEN + render(shape, width, labels, top))
        sys.stdout.flush()
        shown.append(True)

    shape = collect(
        cfg,
        tuple(args.queues) or DEFAULT_QUEUES,
        args.s,
        limits,
        batch=max(0, args.N),
        progress=show_batch if terminal else None,
    )
    if args.p:
        shape.add_parents(args.m)
    if args.json:
        sys.stdout.write(as_json(shape, labels))
    else:
        sys.stdout.write((CLEAR_SCREEN if shown else "") + render(shape, width, labels, top))
    if args.plot:
        plot(shape, labels, args.plot, args.s)
    return 0
