"""cli.super - queue maintenance by the administrator (postsuper)

SYNOPSIS
    mta super [-c CONFIG_DIR] [-v] -d QUEUE_ID|ALL [QUEUE]   # delete
    mta super -h QUEUE_ID|ALL [QUEUE]                       # put on hold
    mta super -H QUEUE_ID|ALL [QUEUE]                       # release from hold
    mta super -r QUEUE_ID|ALL [QUEUE]                       # requeue
    mta super -e QUEUE_ID|ALL [QUEUE]                       # force to expire (-f: and release)
    mta super -p                                            # purge temporary files
    mta super -s                                            # structure check
    mta super -d - < ids                                    # ids from standard input

DESCRIPTION
    The operations and their messages are postsuper's. -d, -h, -H and -r
    may be given several times and mixed; QUEUE_ID "-" reads queue ids
    from standard input, one per line (the first word of each line, so
    "mta queue -j | jq ... " and mailq-style lines both work); ALL takes
    every message, of QUEUE only when one is named (the queues are
    maildrop, incoming, active, deferred and hold). Each message is
    found wherever it is, and an id that is not in the queue is skipped
    quietly, as postsuper does. At the end one line per operation on
    stderr: "mta super: Deleted: N messages", "Placed on hold: N
    messages", "Released from hold: N messages", "Requeued: N messages".
    Each message touched is logged too ("QUEUEID: removed", "QUEUEID:
    placed on hold", "QUEUEID: released from hold", "QUEUEID:
    requeued").

    -e marks a message to expire, as Postfix 3.5 does (the owner's
    execute bit on the queue file): mailq shows it with "#", and the
    next time qmgr takes it in, its recipients that are left bounce
    with their last deferral reason ("status=force-expired"); a
    deferred message is made due at once. -f does the same and also
    releases the message from hold.

    -d removes the queue file and its bounce, defer and trace logs. -h
    moves a message to hold/, where qmgr leaves it alone; -H moves it
    back to deferred/ with its retry time now and asks qmgr to look.

    -r passes a message through cleanup again, in this process, as
    postsuper -r does by way of maildrop and pickup: the recipients not
    yet done are rewritten, mapped (canonical, virtual aliases) and
    resolved again, and header and body checks run again, all under
    the configuration of now; the message gets a new queue id and keeps
    its sender, arrival time, delay-warning time, RET and ENVID, each
    recipient's ORCPT and NOTIFY, and its content, under one more
    Received: header naming the user who requeued it. The rewriting
    context (local or remote) is the one the message came in with;
    REDIRECT and FILTER decisions of the old checks are dropped. The
    log says "NEWID: uid=N from=<sender> orig_id=OLDID", then
    "OLDID: requeued". The old file first moves to hold/, so that qmgr
    leaves it alone; it and its bounce, defer and trace logs are removed
    only once the new file is fsynced and renamed into place, so a
    crash can duplicate the message but never lose it (after a crash
    the old copy waits on hold). When cleanup refuses the message now (a
    new header_checks REJECT, a table that does not answer), it goes back
    to incoming/ or deferred/ where it was, or stays on hold, with a
    warning. A message in maildrop/ is left alone, since pickup feeds it
    to cleanup anyway.

    -p removes temporary files (a leading dot and ".tmp") older than one
    hour, which a crash left behind. -s moves queue files that sit in
    the wrong hash directory of their queue to the right one, and moves
    files whose name is no queue id to corrupt/.

    All of it is safe while the mail system runs: a message qmgr holds
    in its active window and that is deleted, held or requeued here
    meanwhile is dropped by qmgr when its delivery ends (its done marks
    or retry time cannot be written any more), without touching
    anything else. As with Postfix, a recipient whose delivery was under
    way while -r copied the message may get it twice.

SECURITY
    Changes the queue, so it runs as root or mail_owner (or the user of
    the embedded instance). Queue ids from the command line or stdin
    must have the form of a queue id before they become paths. -r
    reads message content, which is untrusted, and writes the new queue
    file with the effective uid and gid of the old file's owner, so
    that root makes no queue file that mail_owner cannot read.
"""

from __future__ import annotations

import os
import sys
import time

from mta import log
from mta.bounce import logfile
from mta.cli.common import load_or_report, make_parser
from mta.config import ConfigError
from mta.maps import MapError
from mta.master.privs import effective_ids
from mta.qmgr.scan import iter_queue
from mta.queue.purge import purge_temporary
from mta.queue.queue_file import (
    FORCE_EXPIRE_MODE,
    TMP_SUFFIX,
    QueueFileError,
    find_queue_file,
    fsync_dir,
    parse_queue_file,
    queue_layout,
    queue_path,
    read_file,
)
from mta.queue.queue_id import is_queue_id

QUEUES = ("maildrop", "incoming", "active", "deferred", "hold")
REQUEUE_QUEUES = ("hold", "incoming", "active", "deferred")  # maildrop goes to cleanup anyway
REQUEUE_TRIES = 3  # looks for a message that qmgr moves between queues meanwhile
REQUEUE_DROPPED_ATTRS = ("redirect", "filter")  # check actions: cleanup decides them again
SUMMARY = {
    "d": "Deleted",
    "h": "Placed on hold",
    "H": "Released from hold",
    "r": "Requeued",
    "e": "Force-expired",
    "f": "Force-expired",
}
LOGGED = {
    "d": "removed",
    "h": "placed on hold",
    "H": "released from hold",
    "r": "requeued",
    "e": "force-expired",
    "f": "force-expired",
}


class Queue:
    """The queue directories of one instance and the moves between them."""

    def __init__(self, cfg) -> None:
        self.cfg = cfg
        self.layout = queue_layout(cfg)
        self.dir, self.depth, self.hashed = self.layout
        self._cleanup = None

    @property
    def cleanup(self):
        """The cleanup library, made on first use (only -r needs it)."""
        if self._cleanup is None:
            from mta.cleanup import Cleanup

            self._cleanup = Cleanup(self.cfg)
        return self._cleanup

    def path(self, queue: str, queue_id: str) -> str:
        return queue_path(self.layout, queue, queue_id)

    def find(self, queue_id: str, queues=QUEUES) -> tuple[str, str] | None:
        return find_queue_file(self.dir, queue_id, queues, self.depth, self.hashed)

    def move(self, path: str, queue: str, queue_id: str) -> str | None:
        """Rename into queue, durably; None when the file went away first."""
        target = self.path(queue, queue_id)
        directory = os.path.dirname(target)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        try:
            os.rename(path, target)
        except FileNotFoundError:
            return None
        fsync_dir(directory)
        return target

    def all_ids(self, queues) -> list[tuple[str, str]]:
        return [
            (queue_id, queue)
            for queue in queues
            for queue_id, _ in iter_queue(self.dir, queue, self.depth, self.hashed)
        ]


def _delete(q: Queue, queue_id: str, queue: str, path: str) -> bool:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    fsync_dir(os.path.dirname(path))
    logfile.remove(q.dir, queue_id, hash_depth=q.depth, hashed=q.hashed)
    return True


def _hold(q: Queue, queue_id: str, queue: str, path: str) -> bool:
    return queue != "hold" and q.move(path, "hold", queue_id) is not None


def _release(q: Queue, queue_id: str, queue: str, path: str) -> bool:
    if queue != "hold":
        return False
    target = q.move(path, "deferred", queue_id)
    if target is None:
        return False
    now = time.time()
    os.utime(target, (now, now - 1))  # due at once
    return True


def _requeue(q: Queue, queue_id: str, queue: str, path: str) -> bool:
    """Feed the message through cleanup into a new queue file; drop the old one."""
    from mta.cleanup import ACTION_DISCARDED, ACTION_QUEUED

    if queue == "maildrop":
        return False  # pickup hands it to cleanup anyway
    held = _claim(q, queue_id, queue, path)
    if held is None:
        return False  # finished meanwhile
    queue, held = held
    try:
        result, sender, uid = _feed_cleanup(q, held)
    except QueueFileError as exc:
        _put_back(q, queue_id, queue, held, f"damaged queue file: {exc}")
        return False
    except OSError as exc:
        _put_back(q, queue_id, queue, held, exc.strerror or str(exc))
        return False
    if result.action not in (ACTION_QUEUED, ACTION_DISCARDED):
        _put_back(q, queue_id, queue, held, result.reply or result.action)
        return False
    # the new file is durable (or cleanup threw the message away): only
    # now may the old one go
    os.unlink(held)
    fsync_dir(os.path.dirname(held))
    logfile.remove(q.dir, queue_id, hash_depth=q.depth, hashed=q.hashed)
    if result.action == ACTION_QUEUED:
        log.info("%s: uid=%d from=<%s> orig_id=%s", result.queue_id, uid, sender, queue_id)
    return True


def _claim(q: Queue, queue_id: str, queue: str, path: str) -> tuple[str, str] | None:
    """Put the message on hold, where qmgr leaves it alone while cleanup reads it.

    Returns (the queue it came from, its path in hold/); None when it is
    gone. A message qmgr is delivering is dropped by qmgr when its
    delivery ends, as after -h; a crash from here on leaves it on hold."""
    for _ in range(REQUEUE_TRIES):
        if queue == "hold":
            return queue, path
        held = q.move(path, "hold", queue_id)
        if held is not None:
            return queue, held
        found = q.find(queue_id, REQUEUE_QUEUES)  # qmgr moved it meanwhile
        if found is None:
            return None
        queue, path = found
    return None


def _feed_cleanup(q: Queue, path: str):
    """(cleanup's result, the sender, the uid named in Received:) for the file at path.

    The new file belongs to the owner of the old one: root runs this as
    mail_owner, as postsuper does."""
    from mta.cleanup import Requeue

    data = read_file(path)
    msg = parse_queue_file(data, path)
    attrs = {k: v for k, v in msg.attrs.items() if k not in REQUEUE_DROPPED_ATTRS}
    attrs["full_name"] = msg.full_name
    st = os.stat(path)
    cleanup = q.cleanup  # tables open with the caller's rights
    with effective_ids(st.st_uid, st.st_gid):
        uid = os.geteuid()
        job = cleanup.open(
            msg.sender,
            attrs,
            local_submit=attrs.get("protocol") == "local",  # the same rewriting context
            flags=msg.flags,
            requeue=Requeue(msg.arrival, msg.warn_time, uid),
        )
        try:
            job.copy_message(msg, path, data)
        except BaseException:
            job.abort()
            raise
        return job.close(), msg.sender, uid


def _put_back(q: Queue, queue_id: str, queue: str, held: str, why: str) -> None:
    """Requeueing failed: return the message where it was; an active one stays on hold."""
    where = "left on hold"
    if queue in ("incoming", "deferred") and q.move(held, queue, queue_id) is not None:
        where = f"back in {queue}"
    log.warning("%s: cannot requeue: %s; %s", queue_id, why, where)
    sys.stderr.write(f"mta super: warning: {queue_id}: cannot requeue: {why}; {where}\n")


def _expire(q: Queue, queue_id: str, queue: str, path: str) -> bool:
    mode = os.stat(path).st_mode
    if not mode & FORCE_EXPIRE_MODE:
        os.chmod(path, (mode | FORCE_EXPIRE_MODE) & 0o7777)
    if queue == "deferred":
        now = time.time()
        os.utime(path, (now, now - 1))  # qmgr bounces it at its next deferred scan
    return True


def _expire_release(q: Queue, queue_id: str, queue: str, path: str) -> bool:
    _expire(q, queue_id, queue, path)
    if queue == "hold":
        _release(q, queue_id, queue, path)
    return True


ACTIONS = {
    "d": _delete,
    "h": _hold,
    "H": _release,
    "r": _requeue,
    "e": _expire,
    "f": _expire_release,
}


def _targets(q: Queue, ids: list[str], queue: str | None, stdin) -> list[tuple[str, str]]:
    """(queue id, queue name or "") for the ids given; ALL expands, "-" reads stdin."""
    queues = (queue,) if queue else QUEUES
    out: list[tuple[str, str]] = []
    for qid in ids:
        if qid == "ALL":
            out += q.all_ids(queues)
        elif qid == "-":
            for line in stdin:
                words = line.split()
                if words:
                    out.append((words[0].rstrip("*!#"), ""))
        else:
            out.append((qid, ""))
    return out


def run_action(cfg, q: Queue, op: str, ids: list[str], queue: str | None, stdin) -> int:
    """Apply op to the messages named; how many it changed."""
    queues = (queue,) if queue else QUEUES
    done = 0
    for queue_id, where in _targets(q, ids, queue, stdin):
        if not is_queue_id(queue_id):
            sys.stderr.write(f"mta super: warning: invalid mail queue id: {queue_id}\n")
            continue
        found = q.find(queue_id, (where,) if where else queues)
        if found is None:
            continue
        try:
            changed = ACTIONS[op](q, queue_id, *found)
        except OSError as exc:
            sys.stderr.write(f"mta super: warning: {queue_id}: {exc.strerror or exc}\n")
            continue
        if changed:
            done += 1
            log.info("%s: %s", queue_id, LOGGED[op])
    return done


def check_structure(q: Queue) -> tuple[int, int]:
    """-s: (files moved to their right hash directory, files moved to corrupt/)."""
    rehashed = corrupt = 0
    for queue in QUEUES:
        top = os.path.join(q.dir, queue)
        for root, _dirs, files in os.walk(top):
            for name in files:
                if name.startswith(".") and name.endswith(TMP_SUFFIX):
                    continue
                path = os.path.join(root, name)
                if not is_queue_id(name):
                    target_dir = os.path.join(q.dir, "corrupt")
                    os.makedirs(target_dir, mode=0o700, exist_ok=True)
                    os.rename(path, os.path.join(target_dir, name))
                    corrupt += 1
                    log.warning("%s: not a queue file name; moved to corrupt", path)
                elif path != q.path(queue, name):
                    if q.move(path, queue, name) is not None:
                        rehashed += 1
                        log.info("%s: moved to its hash directory in %s", name, queue)
    return rehashed, corrupt


def _plural(n: int) -> str:
    return f"{n} message{'s' if n != 1 else ''}"


def main(argv: list[str], command: str = "super") -> int:
    # -h is postsuper's hold, so help is --help only
    parser = make_parser(command, "Maintain the mail queue, as postsuper does.", add_help=False)
    parser.add_argument("--help", action="help", help="show this help message and exit")
    for flag, what in (
        ("-d", "delete"),
        ("-h", "put on hold"),
        ("-H", "release from hold"),
        ("-r", "requeue"),
        ("-e", "force to expire"),
        ("-f", "force to expire and release from hold"),
    ):
        parser.add_argument(
            flag,
            action="append",
            default=[],
            metavar="QUEUE_ID",
            help=f"{what} this message (ALL: every one; -: ids from stdin)",
        )
    parser.add_argument("-p", action="store_true", help="purge stale temporary files")
    parser.add_argument("-s", action="store_true", help="check and repair the queue structure")
    parser.add_argument("queue", nargs="?", choices=QUEUES, help="with ALL: only this queue")
    args = parser.parse_args(argv)
    ops = [(op, getattr(args, op)) for op in ("s", "p") if getattr(args, op)]
    ops += [(op, getattr(args, op)) for op in ACTIONS]
    if not any(v for _, v in ops):
        parser.error("nothing to do: give -d, -h, -H, -r, -e, -f, -p or -s")
    cfg = load_or_report(args, command)
    if cfg is None:
        return 1
    log.init("postsuper", cfg)
    q = Queue(cfg)
    if args.s:
        rehashed, corrupt = check_structure(q)
        if rehashed or corrupt:
            sys.stderr.write(
                f"mta {command}: Structure check: {rehashed} rehashed, {corrupt} to corrupt\n"
            )
    if args.p:
        n = purge_temporary(q.dir)
        if n:
            sys.stderr.write(f"mta {command}: Removed: {n} temporary file{'s' if n != 1 else ''}\n")
    if args.r:
        try:
            q.cleanup  # noqa: B018 - opens the tables now, so a bad one stops -r at once
        except (ConfigError, MapError, OSError) as exc:
            sys.stderr.write(f"mta {command}: fatal: cannot requeue: {exc}\n")
            return 1
    released = False
    for op in ACTIONS:
        ids = getattr(args, op)
        if not ids:
            continue
        n = run_action(cfg, q, op, ids, args.queue, sys.stdin)
        if n:
            sys.stderr.write(f"mta {command}: {SUMMARY[op]}: {_plural(n)}\n")
            released = released or op in ("H", "r", "e", "f")
    if released:
        _kick_qmgr(cfg)
    return 0


def _kick_qmgr(cfg) -> None:
    """Released or requeued mail is due now: tell qmgr, if it runs."""
    from mta.common.trigger import TRIGGER_DEFERRED, TRIGGER_INCOMING, trigger_qmgr

    trigger_qmgr(cfg, TRIGGER_DEFERRED + TRIGGER_INCOMING)
