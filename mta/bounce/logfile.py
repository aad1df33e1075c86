"""bounce.logfile - per-message logs of recipient outcomes (bounce/, defer/, trace/)

SYNOPSIS
    from mta.bounce import logfile
    logfile.append(queue_dir, "bounce", queue_id, [status, ...])   # durable
    for status in logfile.read(queue_dir, "defer", queue_id): ...
    reasons = logfile.read_reasons(path)                       # {offset: reason}
    logfile.remove(queue_dir, queue_id)                          # all three

DESCRIPTION
    Delivery agents append one entry per recipient to the log of the
    message in bounce/ (permanent failures), defer/ (temporary ones) or
    trace/ (every outcome, when a notice was asked for), before the
    recipient is marked done in the queue file; the notices and the
    queue listing read them back. Each entry is a block of "name=value"
    lines ended by an empty line: recipient, orig_to, dsn_orcpt,
    notify, offset, status (the enhanced code), action, relay, reason,
    when, and when they are set word (the maillog word, "deliverable"
    for sendmail -bv), dsn_passed (the next hop took the DSN
    request), diag_type, diag_text and remote_mta (a remote
    server's reply and name, for the notice's Diagnostic-Code: and
    Remote-MTA:), and class (the bounce class, common/bounce_class). Values are folded to one line. Entries written
    before a field existed read back with that field empty.

    append() writes with O_APPEND in one write and fdatasync()s before
    it returns, so an entry that was appended survives a crash. A
    process running as root (the privileged local, pipe or virtual
    agent) gives a log it writes, and any hashed subdirectory it makes,
    the owner of the log's queue directory (bounce/, defer/, trace/),
    which is mail_owner: qmgr and the notices read and remove these logs
    as mail_owner. fchown() of the open file is used rather than
    switching the effective uid, because the agent's worker threads
    deliver as other users at the same time and a process-wide uid
    switch would race with them. read()
    skips damaged entries (a log is advice, not the message) and reports
    how many it skipped through the on_damage callback.

    read_reasons() is the queue listing's reader: the reason of the last
    entry for each recipient offset, as latest_by_recipient(read(...))
    gives it, from the log entry kernel (latest_reasons()) without
    building the statuses; a missing or unreadable log gives {}.

    Logs of queues named in hash_queue_names live in the same hashed
    subdirectories as queue files would.

SECURITY
    Reasons come from remote servers and commands; they are stored as
    text with control characters folded, and read back without being
    interpreted. Files and directories made as root are handed to the
    owner of the queue directory they are in, never to anyone else.

SEE ALSO
    mta/_speedups/logentry.pyx (latest_reasons), logentry_ref.py (reference)
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable

from mta._speedups import NO_EXTENSIONS
from mta._speedups.logentry_ref import latest_reasons as latest_reasons_ref
from mta.common.dsn import ACTIONS, RecipientStatus
from mta.queue.queue_file import HASH_QUEUE_NAMES_DEFAULT, make_queue_dirs, queue_dir_for

latest_reasons_c = None
if not NO_EXTENSIONS:
    try:
        from mta._speedups.logentry import latest_reasons as latest_reasons_c
    except ImportError:
        pass

latest_reasons = latest_reasons_c or latest_reasons_ref

LOG_QUEUES = ("bounce", "defer", "trace")  # the per-message log directories
LOG_MODE = 0o600
_FOLD = {c: " " for c in range(32)}


def _fold(value: object) -> str:
    return str(value).translate(_FOLD)


def log_path(
    queue_dir: str,
    kind: str,
    queue_id: str,
    hash_depth: int = 1,
    hashed: tuple[str, ...] = HASH_QUEUE_NAMES_DEFAULT,
) -> str:
    """Where the kind ("bounce", "defer", "trace") log of queue_id lives."""
    return os.path.join(queue_dir_for(queue_dir, kind, queue_id, hash_depth, hashed), queue_id)


def encode_entry(st: RecipientStatus, when: float | None = None) -> bytes:
    lines = [
        f"recipient={_fold(st.address)}",
        f"orig_to={_fold(st.orig)}",
        f"dsn_orcpt={_fold(st.dsn_orcpt)}",
        f"notify={int(st.notify)}",
        f"offset={int(st.offset)}",
        f"status={_fold(st.dsn)}",
        f"action={_fold(st.action)}",
        f"relay={_fold(st.relay)}",
        f"reason={_fold(st.reason)}",
        f"when={time.time() if when is None else when:.3f}",
    ]
    if st.status_word:
        lines.append(f"word={_fold(st.status_word)}")
    if st.dsn_passed:
        lines.append("dsn_passed=1")
    if st.diag_type:
        lines.append(f"diag_type={_fold(st.diag_type)}")
        lines.append(f"diag_text={_fold(st.diag_text)}")
    if st.remote_mta:
        lines.append(f"remote_mta={_fold(st.remote_mta)}")
    if st.klass:
        lines.append(f"class={_fold(st.klass)}")
    return ("\n".join(lines) + "\n\n").encode("utf-8", "surrogateescape")


def append(
    queue_dir: str,
    kind: str,
    queue_id: str,
    statuses: Iterable[RecipientStatus],
    hash_depth: int = 1,
    hashed: tuple[str, ...] = HASH_QUEUE_NAMES_DEFAULT,
) -> None:
    """Append entries to the message's kind log and make them durable."""
    data = b"".join(encode_entry(st) for st in statuses)
    if not data:
        return
    path = log_path(queue_dir, kind, queue_id, hash_depth, hashed)
    owner = _tree_owner(queue_dir, kind)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, LOG_MODE)
    except FileNotFoundError:
        make_queue_dirs(os.path.dirname(path), owner=owner)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, LOG_MODE)
    try:
        if owner is not None:
            st = os.fstat(fd)
            if (st.st_uid, st.st_gid) != owner:
                os.fchown(fd, *owner)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fdatasync(fd)
    finally:
        os.close(fd)


def _tree_owner(queue_dir: str, kind: str) -> tuple[int, int] | None:
    """(uid, gid) of queue_dir/kind when this process is root, else None (also
    when that directory is missing: "mta check" makes it, owned by mail_owner)."""
    if os.geteuid() != 0:
        return None
    try:
        st = os.stat(os.path.join(queue_dir, kind))
    except FileNotFoundError:
        return None
    return st.st_uid, st.st_gid


def _decode_entry(block: str) -> RecipientStatus | None:
    fields: dict[str, str] = {}
    for line in block.split("\n"):
        name, eq, value = line.partition("=")
        if not eq:
            return None
        fields[name] = value
    try:
        st = RecipientStatus(
            address=fields["recipient"],
            offset=int(fields["offset"]),
            action=fields["action"],
            dsn=fields["status"],
            reason=fields.get("reason", ""),
            relay=fields.get("relay", "none"),
            orig=fields.get("orig_to", ""),
            dsn_orcpt=fields.get("dsn_orcpt", ""),
            notify=int(fields.get("notify", "0") or 0),
            status_word=fields.get("word", ""),
            dsn_passed=fields.get("dsn_passed") == "1",
            diag_type=fields.get("diag_type", ""),
            diag_text=fields.get("diag_text", ""),
            remote_mta=fields.get("remote_mta", ""),
            klass=fields.get("class", ""),
        )
    except (KeyError, ValueError):
        return None
    if st.action not in ACTIONS:
        return None
    return st


def read(
    queue_dir: str,
    kind: str,
    queue_id: str,
    hash_depth: int = 1,
    hashed: tuple[str, ...] = HASH_QUEUE_NAMES_DEFAULT,
    on_damage: Callable[[str, int], None] | None = None,
) -> list[RecipientStatus]:
    """The entries of a log, oldest first; [] when there is none."""
    path = log_path(queue_dir, kind, queue_id, hash_depth, hashed)
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8", "surrogateescape")
    except FileNotFoundError:
        return []
    out: list[RecipientStatus] = []
    damaged = 0
    for block in text.split("\n\n"):
        block = block.strip("\n")
        if not block:
            continue
        st = _decode_entry(block)
        if st is None:
            damaged += 1
        else:
            out.append(st)
    if damaged and on_damage is not None:
        on_damage(path, damaged)
    return out


def read_reasons(path: str) -> dict[int, str]:
    """{recipient offset: reason of its last entry} of the log at path; {} when
    there is none or it cannot be read. Damaged entries are passed over."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return {}
    try:
        pieces = []
        while True:
            piece = os.read(fd, 1 << 16)
            if not piece:
                break
            pieces.append(piece)
    except OSError:
        return {}
    finally:
        os.close(fd)
    return latest_reasons(b"".join(pieces))


def latest_by_recipient(entries: Iterable[RecipientStatus]) -> dict[int, RecipientStatus]:
    """The last entry for each recipient offset."""
    return {st.offset: st for st in entries}


def remove(
    queue_dir: str,
    queue_id: str,
    kinds: Iterable[str] = LOG_QUEUES,
    hash_depth: int = 1,
    hashed: tuple[str, ...] = HASH_QUEUE_NAMES_DEFAULT,
) -> None:
    """Remove the message's logs; missing ones are fine."""
    for kind in kinds:
        try:
            os.unlink(log_path(queue_dir, kind, queue_id, hash_depth, hashed))
        except FileNotFoundError:
            pass
