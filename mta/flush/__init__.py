"""flush - per-destination logs of deferred mail, for ETRN, sendmail -qR, mta queue -s

SYNOPSIS
    from mta.flush import FlushLogs, eligible, flush_site, refresh_logs
    logs = FlushLogs(cfg)                      # qmgr, once
    logs.add(queue_id, addresses)              # qmgr, after each deferral
    if eligible(cfg, "example.com"):
        count = flush_site(cfg, "example.com") # messages made due; qmgr was told
    stats = refresh_logs(cfg, time.time())     # qmgr's housekeeping

DESCRIPTION
    Each destination in fast_flush_domains (a recipient's domain, in
    lower case; "[192.0.2.1]" for an address literal) has a log in
    $queue_directory/flush: one queue id per line, appended to by qmgr
    whenever it moves a message with a delayed recipient there into
    deferred/. The log is a hint that spares the flush a walk over the
    whole deferred queue; deferred/ stays the truth. An id may appear
    more than once, and ids of mail that has gone since are harmless.

    flush_site() takes the site's log away by renaming it, and for each
    distinct id whose file is still in deferred/ with a recipient not
    yet done in that site, sets the file's retry time to now. The ids
    it made due are appended back to the log (qmgr may have started a
    new one meanwhile; nothing it wrote is lost), the rest are dropped,
    and qmgr is asked to scan deferred/ ("D"). It returns how many
    messages it made due.

    refresh_logs() does the periodic upkeep: a non-empty log that no
    flush has read for fast_flush_refresh_time is flushed as if its
    site had asked, which also trims it; an empty log untouched for
    fast_flush_purge_time is removed; a log left taken by a flush that
    died is merged back. A log's access time records its last flush.

    Log names: the site is lowered and stripped of a trailing dot;
    letters, digits and "-._[]:" stay as they are (a leading "." does
    not), every other character becomes "%xx" per byte of its UTF-8
    form, and a name that would be longer than FLUSH_NAME_MAX becomes
    "=" and the SHA-256 of the site. Distinct sites get distinct names,
    none contains "/" or starts with ".", so a name stays inside the
    flush directory and never collides with a taken (".NAME.TAG.take")
    log. The flush directory is not hashed.

    eligible() says whether SITE is in fast_flush_domains, as Postfix
    requires of ETRN and of sendmail -qR.

SECURITY
    SITE comes from an SMTP client (ETRN) or from a recipient address
    in the mail: it is only ever used in a path through log_name().
    Log contents are read as untrusted: a line that is not a queue id
    (binary junk, overlong, "/") is skipped with a warning naming the
    file, and only ids that pass is_queue_id() reach queue_path().
    Logs are opened without following symbolic links. Runs as
    mail_owner (qmgr) or as the calling user (smtpd worker thread,
    mta queue -s).

    Must never: fail or hold up a deferral (add() writes one small
    O_APPEND record, no fsync, and logs a warning on error); read
    message content; wait on a lock (there is none: a flush takes the
    log by rename, so qmgr always appends to a live file).
"""

from __future__ import annotations

import hashlib
import itertools
import os
import stat
import time
from collections.abc import Iterable
from typing import NamedTuple

from mta import log
from mta.common.match_list import DomainList
from mta.common.trigger import TRIGGER_DEFERRED, trigger_qmgr
from mta.maps.maps import MapError
from mta.queue.paths import QUEUE_DEFERRED, QUEUE_FLUSH
from mta.queue.queue_file import QueueFileError, queue_layout, queue_path, read_envelope
from mta.queue.queue_id import is_queue_id

FLUSH_SAFE = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-._[]:")  # kept as is in names
FLUSH_NAME_MAX = 200  # longest plain log name; longer ones are hashed
FLUSH_HASH_MARK = "="  # first character of a hashed log name (never in a plain one)
FLUSH_LINE_MAX = 64  # longest log line that can be a queue id; longer lines are junk
FLUSH_READ_CHUNK = 1 << 16  # logs are read in pieces of this size
FLUSH_TAKE_SUFFIX = ".take"  # a log taken by a flush: ".NAME.TAG.take"
FLUSH_TAKE_STALE = 3600.0  # seconds after which a taken log is a dead flush's, merged back
FLUSH_FILE_MODE = 0o600  # logs are mail_owner's
FLUSH_DIR_MODE = 0o700

_OPEN_APPEND = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
_OPEN_READ = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW
_take_seq = itertools.count()  # tells apart two flushes of one site in one process


class RefreshStats(NamedTuple):
    refreshed: int  # logs flushed because nobody had read them for too long
    purged: int  # empty logs removed
    due: int  # messages those refreshes made due (the caller tells qmgr)


# ---------------------------------------------------------------- names
def normalize_site(site: str) -> str:
    """The site as logs know it: no surrounding blanks, lower case, no trailing dot."""
    return site.strip().lower().rstrip(".")


def encode_site(site: str) -> str:
    """The log file name of an already normalized site; ValueError when empty.

    Injective, never contains "/" and never starts with "."."""
    if not site:
        raise ValueError("empty site name")
    parts = []
    for i, ch in enumerate(site):
        if ch in FLUSH_SAFE and not (i == 0 and ch == "."):
            parts.append(ch)
        else:
            parts.extend(f"%{b:02x}" for b in ch.encode("utf-8", "surrogatepass"))
    name = "".join(parts)
    if len(name) > FLUSH_NAME_MAX:
        digest = hashlib.sha256(site.encode("utf-8", "surrogatepass")).hexdigest()
        name = FLUSH_HASH_MARK + digest
    return name


def log_name(site: str) -> str:
    """The log file name of site as given (ETRN argument, recipient domain)."""
    return encode_site(normalize_site(site))


def flush_dir(queue_dir: str) -> str:
    return os.path.join(queue_dir, QUEUE_FLUSH)


def _domain(address: str) -> str:
    return address.rpartition("@")[2] if "@" in address else ""


def eligible(cfg, site: str) -> bool:
    """Whether site may be flushed on request (fast_flush_domains)."""
    return bool(DomainList.from_param(cfg, "fast_flush_domains").match(site.strip("[]")))


# ---------------------------------------------------------------- appending
def append_ids(directory: str, name: str, queue_ids: Iterable[str]) -> None:
    """Append queue ids to the log called name in the flush directory, in one
    write (the log is made when absent); OSError on failure."""
    data = "".join(f"{qid}\n" for qid in queue_ids).encode("ascii")
    path = os.path.join(directory, name)
    try:
        fd = os.open(path, _OPEN_APPEND, FLUSH_FILE_MODE)
    except FileNotFoundError:
        os.makedirs(directory, FLUSH_DIR_MODE, exist_ok=True)
        fd = os.open(path, _OPEN_APPEND, FLUSH_FILE_MODE)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


class FlushLogs:
    """qmgr's side: record deferred mail in the logs of eligible sites."""

    def __init__(self, cfg) -> None:
        self.directory = flush_dir(cfg.get("queue_directory"))
        self.domains: DomainList | None = None
        try:
            self.domains = DomainList.from_param(cfg, "fast_flush_domains")
        except MapError as exc:
            log.warning("fast_flush_domains: %s; no fast flush logs are kept", exc)
        self.enabled = bool(self.domains and self.domains.entries)

    def add(self, queue_id: str, addresses: Iterable[str]) -> int:
        """Log queue_id once for each eligible site among addresses; how many logs.

        Never raises for a bad site, a table error or a file system error:
        each is a warning, and the deferral goes on."""
        if not self.enabled:
            return 0
        added = 0
        for site in {normalize_site(_domain(a)) for a in addresses}:
            if not site:
                continue
            try:
                if not self.domains.match(site.strip("[]")):
                    continue
                append_ids(self.directory, encode_site(site), (queue_id,))
                added += 1
            except (OSError, ValueError, MapError) as exc:
                log.warning("%s: cannot add to the fast flush log of %s: %s", queue_id, site, exc)
        return added


# ---------------------------------------------------------------- reading
def _read_ids(path: str, offset: int, ids: dict[str, None]) -> tuple[int, int, bool]:
    """Add each valid id of the log at path, from offset on, to ids (kept in order).

    Returns (offset after the last complete line, lines skipped as bad,
    whether an unterminated piece follows)."""
    bad = 0
    fd = os.open(path, _OPEN_READ)
    with os.fdopen(fd, "rb") as f:
        f.seek(offset)
        end = offset
        line = bytearray()
        junk = False  # the current line is already too long
        while chunk := f.read(FLUSH_READ_CHUNK):
            base = f.tell() - len(chunk)
            start = 0
            while True:
                nl = chunk.find(b"\n", start)
                if nl < 0:
                    if not junk:
                        line += chunk[start:]
                        if len(line) > FLUSH_LINE_MAX:
                            junk, line = True, bytearray()
                    break
                if not junk:
                    line += chunk[start:nl]
                    text = line.decode("ascii", "replace")
                    if len(line) <= FLUSH_LINE_MAX and is_queue_id(text):
                        ids[text] = None
                    else:
                        bad += 1
                else:
                    bad += 1
                junk, line = False, bytearray()
                end = base + nl + 1
                start = nl + 1
        return end, bad, bool(line) or junk


def _pending_here(path: str, name: str) -> bool:
    """Whether the queue file at path has a recipient not yet done whose site has
    the log name name."""
    try:
        env = read_envelope(path)  # the envelope only: the content is not needed
    except FileNotFoundError:
        return False
    except (OSError, QueueFileError) as exc:
        log.verbose("flush: %s: %s", path, exc)
        return False
    for site in {normalize_site(_domain(address)) for _, address in env.pending}:
        try:
            if site and encode_site(site) == name:
                return True
        except ValueError:
            continue
    return False


def _warn_bad(path: str, bad: int, tail: bool) -> None:
    if bad or tail:
        lines = bad + bool(tail)
        log.warning("fast flush log %s: skipped %d malformed line(s)", path, lines)


# ---------------------------------------------------------------- flushing
def _take(directory: str, name: str) -> str | None:
    """Rename the log called name out of the way; the taken path, None when absent."""
    taken = os.path.join(directory, f".{name}.{os.getpid()}-{next(_take_seq)}{FLUSH_TAKE_SUFFIX}")
    try:
        os.rename(os.path.join(directory, name), taken)
    except FileNotFoundError:
        return None
    try:
        os.utime(taken, follow_symlinks=False)  # its age now tells a dead flush's from a live one
    except OSError:
        pass
    return taken


def _give_back(directory: str, name: str, queue_ids: Iterable[str], now: float) -> None:
    """Append queue_ids to the live log (making it when absent) and mark it read now."""
    append_ids(directory, name, queue_ids)
    path = os.path.join(directory, name)
    try:
        st = os.lstat(path)
        os.utime(path, (now, st.st_mtime), follow_symlinks=False)
    except OSError as exc:
        log.warning("fast flush log %s: cannot set its read time: %s", path, exc)


def _flush_log(layout: tuple, name: str) -> int:
    """Make due the deferred mail listed in the log called name, and trim the log."""
    now = time.time()
    directory = flush_dir(layout[0])
    path = os.path.join(directory, name)
    try:
        taken = _take(directory, name)
    except OSError as exc:
        log.warning("fast flush log %s: cannot take it: %s", path, exc)
        return 0
    if taken is None:
        return 0
    ids: dict[str, None] = {}
    count = 0
    try:
        end, bad, _ = _read_ids(taken, 0, ids)
        keep: list[str] = []
        for qid in ids:
            qpath = queue_path(layout, QUEUE_DEFERRED, qid)
            if not _pending_here(qpath, name):
                continue
            try:
                os.utime(qpath, (now, now - 1))
            except OSError:
                continue  # gone since: nothing to keep
            keep.append(qid)
            count += 1
        # qmgr may have appended to the file just after it was taken
        late: dict[str, None] = {}
        _, late_bad, tail = _read_ids(taken, end, late)
        _warn_bad(path, bad + late_bad, tail)
        keep.extend(q for q in late if q not in ids)
        _give_back(directory, name, keep, now)
    except OSError as exc:
        log.warning("fast flush log %s: %s; merging it back", path, exc)
        _merge_back(taken, directory, name)
        return count
    try:
        os.unlink(taken)
    except OSError as exc:
        log.warning("fast flush log %s: cannot remove %s: %s", path, taken, exc)
    return count


def _merge_back(taken: str, directory: str, name: str) -> None:
    """Append what a taken log holds to the live one, then remove the taken file."""
    ids: dict[str, None] = {}
    try:
        _, bad, tail = _read_ids(taken, 0, ids)
        _warn_bad(taken, bad, tail)
        if ids:
            append_ids(directory, name, ids)
        os.unlink(taken)
    except OSError as exc:
        log.warning("fast flush log %s: cannot merge it back: %s", taken, exc)


def flush_site(cfg, site: str) -> int:
    """Make site's logged deferred mail due now and tell qmgr; how many messages."""
    try:
        name = log_name(site)
    except ValueError:
        return 0
    count = _flush_log(queue_layout(cfg), name)
    if count:
        trigger_qmgr(cfg, TRIGGER_DEFERRED)
    return count


# ---------------------------------------------------------------- upkeep
def _taken_name(fname: str) -> str | None:
    """The log name inside a taken file's name ".NAME.TAG.take", None when not one."""
    if not (fname.startswith(".") and fname.endswith(FLUSH_TAKE_SUFFIX)):
        return None
    name = fname[1 : -len(FLUSH_TAKE_SUFFIX)].rpartition(".")[0]
    return name if name and not name.startswith(".") else None


def _purge(directory: str, name: str) -> bool:
    """Remove the empty log called name; put back whatever reached it meanwhile."""
    taken = _take(directory, name)
    if taken is None:
        return False
    try:
        size = os.lstat(taken).st_size
    except OSError:
        size = 1
    if size:
        _merge_back(taken, directory, name)
        return False
    os.unlink(taken)
    return True


def refresh_logs(cfg, now: float | None = None) -> RefreshStats:
    """Refresh logs nobody read for fast_flush_refresh_time, purge empty ones older
    than fast_flush_purge_time, merge back logs of flushes that died.

    now (default: the time) is what ages are measured from; mail is made
    due at the real time. Does not tell qmgr; the caller does when
    stats.due is not zero."""
    now = time.time() if now is None else now
    refresh_after = cfg.get_time("fast_flush_refresh_time")
    purge_after = cfg.get_time("fast_flush_purge_time")
    layout = queue_layout(cfg)
    directory = flush_dir(layout[0])
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return RefreshStats(0, 0, 0)
    except OSError as exc:
        log.warning("fast flush logs: cannot read %s: %s", directory, exc)
        return RefreshStats(0, 0, 0)
    refreshed = purged = due = 0
    for entry in entries:
        try:
            st = entry.stat(follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode):
                continue
            if entry.name.startswith("."):
                name = _taken_name(entry.name)
                if name is not None and now - st.st_mtime > FLUSH_TAKE_STALE:
                    _merge_back(entry.path, directory, name)
                continue
            if st.st_size == 0:
                if now - st.st_mtime > purge_after and _purge(directory, entry.name):
                    purged += 1
            elif now - st.st_atime > refresh_after:
                due += _flush_log(layout, entry.name)
                refreshed += 1
        except OSError as exc:
            log.warning("fast flush log %s: %s", entry.path, exc)
    return RefreshStats(refreshed, purged, due)
