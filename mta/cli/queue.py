"""cli.queue - list the mail queue and flush it (postqueue, mailq)

SYNOPSIS
    mta queue [-c CONFIG_DIR] [-v] [-p]        # the listing, as mailq
    mta queue -j                               # one JSON object per message
    mta queue -f                               # deliver all deferred mail now
    mta queue -i QUEUE_ID                      # deliver this message now
    mta queue -s SITE                          # deliver SITE's deferred mail now

DESCRIPTION
    The listing (queue/showq.py) goes through maildrop, hold, incoming,
    active and deferred one queue file at a time and prints each message
    as it is read, so a queue of a million messages lists in bounded
    memory; on a terminal, stderr shows how many have been read. -j
    prints postqueue -j's JSON lines instead (queue_name, queue_id,
    arrival_time, message_size, forced_expire, sender, recipients with
    address and delay_reason).

    -f tells qmgr that every deferred message is due (postqueue -f).
    -i QUEUE_ID makes one deferred message due at once and asks qmgr to
    scan the deferred queue; a message in another queue is already on
    its way (or on hold), which the command says. -s SITE makes the
    deferred mail listed in SITE's fast flush log due now (mta/flush),
    when SITE is in fast_flush_domains, as sendmail -qRSITE and ETRN do.

    mailq and sendmail -bp print the same listing.

SECURITY
    Reads the queue, so it runs as root or mail_owner (or the user who
    runs the embedded instance). Postfix's showq service for other
    users is not there yet.
"""

from __future__ import annotations

import json
import os
import sys
import time

from mta.cli.common import load_or_report, make_parser
from mta.queue.showq import (
    format_entry,
    format_footer,
    format_header,
    iter_entries,
)

EX_UNAVAILABLE = 69
PROGRESS_EVERY = 1000  # messages between progress updates


def list_queue(cfg, as_json: bool, out=None) -> int:
    """Print the listing (or the JSON lines) of every queued message."""
    out = out or sys.stdout
    counter = _Counter(sys.stderr)  # a count, not a bar: the total is not known ahead
    count = total = 0
    header_done = False
    for entry in iter_entries(cfg):
        count += 1
        total += entry.message_size
        counter.tick(count)
        if as_json:
            out.write(json.dumps(entry.as_json(), ensure_ascii=False) + "\n")
            continue
        if not header_done:
            out.write(format_header())
            header_done = True
        out.write(format_entry(entry))
    counter.done()
    if not as_json:
        out.write(format_footer(total, count))
    out.flush()
    return 0


class _Counter:
    """How many messages have been read, on stderr when it is a terminal."""

    def __init__(self, stream) -> None:
        self.stream = stream
        self.on = stream.isatty()
        self.last = 0.0

    def tick(self, n: int) -> None:
        if self.on and n % PROGRESS_EVERY == 0 and time.monotonic() - self.last > 0.1:
            self.last = time.monotonic()
            self.stream.write(f"\rreading the queue: {n} messages")
            self.stream.flush()

    def done(self) -> None:
        if self.on and self.last:
            self.stream.write("\r\033[K")
            self.stream.flush()


def flush_one(cfg, queue_id: str) -> tuple[int, str]:
    """postqueue -i: make queue_id due now; (exit status, message)."""
    from mta.common.trigger import TRIGGER_DEFERRED, trigger_qmgr
    from mta.queue.queue_file import find_queue_file, queue_layout
    from mta.queue.showq import QUEUES

    queue_dir, depth, hashed = queue_layout(cfg)
    found = find_queue_file(queue_dir, queue_id, QUEUES, depth, hashed)
    if found is None:
        return 1, f"{queue_id}: no such message in the queue"
    queue, path = found
    if queue != "deferred":
        return 0, f"{queue_id}: in the {queue} queue, not deferred"
    now = time.time()
    try:
        os.utime(path, (now, now - 1))  # due: its retry time has come
    except OSError as exc:
        return 1, f"{queue_id}: {exc.strerror}"
    if not trigger_qmgr(cfg, TRIGGER_DEFERRED):
        return 1, f"{queue_id}: made due, but the mail system is down"
    return 0, ""


def flush_one_site(cfg, site: str) -> tuple[int, str]:
    """postqueue -s: deliver site's deferred mail now; (exit status, message)."""
    from mta.common.trigger import TRIGGER_DEFERRED, trigger_qmgr
    from mta.flush import eligible, flush_site

    if not site or not eligible(cfg, site):
        return EX_UNAVAILABLE, f"cannot flush mail for {site}: not in fast_flush_domains"
    if not trigger_qmgr(cfg, TRIGGER_DEFERRED):  # only asks qmgr to look: is anybody there?
        return EX_UNAVAILABLE, "cannot flush the mail queue: the mail system is down"
    count = flush_site(cfg, site)
    return 0, "" if count else f"no deferred mail for {site}"


def main(argv: list[str], command: str = "queue") -> int:
    parser = make_parser(command, "List the mail queue or flush it, as postqueue does.")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-p", action="store_true", help="the sendmail-style listing (default)")
    group.add_argument("-j", action="store_true", help="one JSON object per message")
    group.add_argument("-f", action="store_true", help="deliver all deferred mail now")
    group.add_argument("-i", metavar="QUEUE_ID", help="deliver this deferred message now")
    group.add_argument("-s", metavar="SITE", help="deliver the mail for SITE now")
    args = parser.parse_args(argv)
    cfg = load_or_report(args, command)
    if cfg is None:
        return 1
    if args.f:
        from mta.cli.postfix import flush_queue

        if not flush_queue(cfg):
            sys.stderr.write(f"mta {command}: fatal: cannot flush: the mail system is down\n")
            return EX_UNAVAILABLE
        return 0
    if args.i:
        status, text = flush_one(cfg, args.i)
        if text:
            sys.stderr.write(f"mta {command}: {'warning: ' if status else ''}{text}\n")
        return status
    if args.s:
        status, text = flush_one_site(cfg, args.s)
        if text:
            sys.stderr.write(f"mta {command}: {'fatal: ' if status else ''}{text}\n")
        return status
    try:
        return list_queue(cfg, args.j)
    except BrokenPipeError:
        return 0
