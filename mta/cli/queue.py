"""cli.queue - list the mail queue and flush it (postqueue, mailq)

SYNOPSIS
    mta queue [-c CONFIG_DIR] [-v] [-p]        # the listing, as mailq
    mta queue -j                               # one JSON object per message
    mta queue --showq [-p|-j]                  # the same, through the showq service
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

    A user who may read the queue directories (root, mail_owner, the
    user of the embedded instance) gets the listing read directly. Any
    other user gets it from the showq service on public/showq (mta
    showq), which reads the queue as mail_owner and sends back the same
    bytes; --showq asks the service even when the queue is readable.
    When the service does not answer either, one line on stderr says
    why and the exit status is 69 (EX_UNAVAILABLE), as postqueue's
    "mail system is down".

    mailq and sendmail -bp print the same listing, the same way.

    Only users on authorized_mailq_users may see the listing, only users
    on authorized_flush_users may use -f, -i and -s; root and mail_owner
    always may. Anybody else gets "User NAME(UID) is not allowed to view
    the mail queue" (or "flush the mail queue") and exit status 77.

SECURITY
    Reads the queue as the invoking user when it may; otherwise only
    copies what the showq service sends. -f, -i and -s change retry
    times, so they need the rights of root or mail_owner.
"""

from __future__ import annotations

import os
import sys
import time

from mta.cli.common import fatal, load_or_report, make_parser
from mta.common.user_acl import FLUSH_ACL, MAILQ_ACL, AccessDenied, check_user
from mta.queue.showq import QUEUES, iter_entries, iter_listing

EX_UNAVAILABLE = 69
PROGRESS_EVERY = 1000  # messages between progress updates


def list_queue(cfg, as_json: bool, out=None) -> int:
    """Print the listing (or the JSON lines) of every queued message, read directly."""
    out = out or sys.stdout
    counter = _Counter(sys.stderr)  # a count, not a bar: the total is not known ahead
    for text in iter_listing(counter.count(iter_entries(cfg)), as_json):
        out.write(text)
    counter.done()
    out.flush()
    return 0


def queue_readable(cfg) -> bool:
    """True when this user may read the queues the listing walks (or they do not exist)."""
    queue_dir = cfg.get("queue_directory")
    if not os.path.isdir(queue_dir):
        return True  # no queue at all: nothing to list
    if not os.access(queue_dir, os.X_OK):
        return False
    for name in QUEUES:
        path = os.path.join(queue_dir, name)
        if os.path.isdir(path) and not os.access(path, os.R_OK | os.X_OK):
            return False
    return True


def show_queue(cfg, as_json: bool, me: str, use_showq: bool = False) -> int:
    """The listing for this user: read directly when allowed, else from the showq service.

    me: the program name that begins an error line ("mta queue", "mailq")."""
    try:
        check_user(cfg, MAILQ_ACL)
    except AccessDenied as exc:
        sys.stderr.write(f"{me}: fatal: {exc}\n")
        return exc.status
    if not use_showq and queue_readable(cfg):
        return list_queue(cfg, as_json)
    from mta.common.showq_clnt import ShowqError, fetch_listing

    sys.stdout.flush()
    try:
        fetch_listing(cfg, as_json, sys.stdout.buffer)
    except ShowqError as exc:
        why = "" if use_showq else "the queue is not readable and "
        sys.stderr.write(
            f"{me}: fatal: cannot list the queue: {why}"
            f"the showq service does not answer ({exc}): the mail system is down\n"
        )
        return EX_UNAVAILABLE
    finally:
        sys.stdout.buffer.flush()
    return 0


class _Counter:
    """How many messages have been read, on stderr when it is a terminal."""

    def __init__(self, stream) -> None:
        self.stream = stream
        self.on = stream.isatty()
        self.last = 0.0

    def count(self, entries):
        """Pass entries through, counting them."""
        for n, entry in enumerate(entries, 1):
            self.tick(n)
            yield entry

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
    parser.add_argument(
        "--showq",
        action="store_true",
        help="list through the showq service even when the queue is readable",
    )
    args = parser.parse_args(argv)
    cfg = load_or_report(args, command)
    if cfg is None:
        return 1
    if args.f or args.i or args.s:
        try:
            check_user(cfg, FLUSH_ACL)
        except AccessDenied as exc:
            return fatal(command, str(exc), exc.status)
    if args.f:
        from mta.cli.postfix import flush_queue

        if not flush_queue(cfg):
            return fatal(command, "cannot flush: the mail system is down", EX_UNAVAILABLE)
        return 0
    if args.i or args.s:
        status, text = flush_one(cfg, args.i) if args.i else flush_one_site(cfg, args.s)
        if status:
            return fatal(command, text, status)
        if text:
            sys.stderr.write(f"mta {command}: {text}\n")
        return 0
    try:
        return show_queue(cfg, args.j, f"mta {command}", args.showq)
    except BrokenPipeError:
        return 0
