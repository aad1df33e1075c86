"""queue.queue_file - write, read and update queue files durably

SYNOPSIS
    from mta.queue.queue_file import QueueFileWriter, Recipient, read_queue_file
    w = QueueFileWriter(queue_dir, "incoming")
    w.write_envelope(sender="a@x", recipients=[Recipient("b@y")], attrs={...})
    w.write_content(chunk); ...
    qid = w.commit()                      # durable: only now may the client hear 250
    msg = read_queue_file(path)           # envelope, recipients with offsets
    env = read_envelope(path)             # what the queue listing needs, quickly
    mark_done(path, [rcpt.offset, ...])   # one byte per recipient, then fdatasync

DESCRIPTION
    The writer creates a temporary file in the target queue directory,
    names the message after the file's inode and creation time (see
    queue_id), streams records into it, and commit() writes the end
    record, fills in the size record, fsyncs the file, renames it to its
    queue id (in its hashed subdirectory when the queue is hashed) and
    fsyncs the directory, so that once commit() returns, a crash can
    neither lose the file nor leave only its temporary name. A writer
    that is aborted, or whose process dies, leaves at most a ".tmp"
    file that readers never look at. A hashed subdirectory that does
    not exist yet is made by make_queue_dirs(), which fsyncs the parent
    of every level it makes (hash_queue_depth 2 makes two), so the path
    to a committed file survives a crash too.

    The reader checks the structure (size record first, end record last,
    recipients inside the envelope or extracted sections) and raises
    QueueFileError on any damage; move_to_corrupt() files such a message
    under corrupt/ for inspection.

    read_envelope() is the queue listing's reader: one read of the first
    ENVELOPE_CHUNK bytes, the record kernel's scan_envelope() over them,
    and the file's mode from the same open file. A larger file is not
    read past its envelope when the size record's recipient count says
    no recipient follows the content and the file ends with its end
    record (damage inside the content of such a file goes unnoticed
    here; the delivery agents still find it). Anything unusual goes
    through the full parser, which gives the answer read_queue_file()
    would.

    mark_done() finishes recipients by overwriting the type byte of each
    recipient record with "D" and syncing once, so a recipient marked
    done is never delivered again, even after a crash.

SECURITY
    Runs as mail_owner on files in the queue; a process running as root
    (the local agent forwarding a message through the cleanup library)
    gives the file it writes the owner of its queue directory, so qmgr
    can read it. Queue ids that come from
    users go through is_queue_id() before they become paths. File
    content is untrusted message data and is never interpreted here.

SEE ALSO
    mta/_speedups/record.pyx (record encoding), record_ref.py (reference)
"""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

from mta._speedups import NO_EXTENSIONS, durable_ref
from mta._speedups.record_ref import ContentEncoder as ContentEncoder_ref
from mta._speedups.record_ref import RecordError
from mta._speedups.record_ref import content_text as content_text_ref
from mta._speedups.record_ref import decode_records as decode_records_ref
from mta._speedups.record_ref import encode_record as encode_record_ref
from mta._speedups.record_ref import scan_envelope as scan_envelope_ref
from mta.queue import rec_type as R
from mta.queue.queue_id import is_queue_id, make_queue_id

ContentEncoder_c = decode_records_c = encode_record_c = content_text_c = scan_envelope_c = None
durable_c = None
if not NO_EXTENSIONS:
    try:
        from mta._speedups import durable as durable_c
        from mta._speedups.record import ContentEncoder as ContentEncoder_c
        from mta._speedups.record import content_text as content_text_c
        from mta._speedups.record import decode_records as decode_records_c
        from mta._speedups.record import encode_record as encode_record_c
        from mta._speedups.record import scan_envelope as scan_envelope_c
    except ImportError:
        pass

ContentEncoder = ContentEncoder_c or ContentEncoder_ref
decode_records = decode_records_c or decode_records_ref
encode_record = encode_record_c or encode_record_ref
content_text = content_text_c or content_text_ref
scan_envelope = scan_envelope_c or scan_envelope_ref
durable = durable_c or durable_ref

FILE_MODE = 0o600  # queue files are for mail_owner only
WRITE_BUFFER = 1 << 16  # flush records to the file in pieces of this size
TMP_SUFFIX = ".tmp"  # temporary files end in this; readers skip them
SIZE_PAYLOAD_LEN = 4 * R.SIZE_FIELD_WIDTH + 3  # four fixed-width fields and blanks
HASH_QUEUE_NAMES_DEFAULT = ("deferred", "defer")
ENVELOPE_CHUNK = 1 << 14  # read_envelope() reads this much first
END_RECORD = bytes((R.REC_TYPE_END, 0))  # the last two bytes of every queue file


class QueueFileError(Exception):
    """A damaged or unreadable queue file."""


@dataclass
class Recipient:
    """One envelope recipient with its DSN details and place in the file."""

    address: str
    orig: str = ""  # the address as first received, before rewriting
    dsn_orcpt: str = ""  # DSN ORCPT, "rfc822;addr"
    notify: int = 0  # DSN_NOTIFY_* bits; 0 = not given
    offset: int = -1  # offset of its record in the file (set when read or written)
    done: bool = False


@dataclass
class QueueMessage:
    """What a queue file says, without the content."""

    queue_id: str
    path: str
    arrival: float = 0.0
    sender: str = ""
    full_name: str = ""
    attrs: dict[str, str] = field(default_factory=dict)
    recipients: list[Recipient] = field(default_factory=list)
    content_offset: int = 0
    content_size: int = 0
    flags: int = 0
    warn_time: float = 0.0  # when a delay warning is due; 0: none (any more)
    warn_offset: int = -1  # where its record is, to clear it in place
    forced_expire: bool = False  # postsuper -e: bounce what is left at the next attempt
    file_size: int = 0


def hash_dirs(queue_id: str, depth: int) -> list[str]:
    """Subdirectory names of a hashed queue: one character of the id per level."""
    tail = queue_id[::-1]
    return [tail[i] for i in range(depth)]


def queue_dir_for(
    queue_dir: str, queue: str, queue_id: str, depth: int = 1, hashed: tuple = ()
) -> str:
    """Directory that holds queue_id in queue, hashed when queue is in hashed."""
    path = os.path.join(queue_dir, queue)
    if queue in hashed and depth > 0:
        path = os.path.join(path, *hash_dirs(queue_id, depth))
    return path


_layouts: dict[int, tuple] = {}


def queue_layout(cfg) -> tuple[str, int, tuple[str, ...]]:
    """(queue_directory, hash_queue_depth, hash_queue_names), read once per configuration."""
    memo = _layouts.get(id(cfg))
    if memo is None or memo[0] is not cfg:
        layout = (
            cfg.get("queue_directory"),
            cfg.get_int("hash_queue_depth"),
            tuple(cfg.get_list("hash_queue_names")),
        )
        memo = _layouts[id(cfg)] = (cfg, layout)
    return memo[1]


def queue_path(layout: tuple, queue: str, queue_id: str) -> str:
    """Where queue_id's file is in queue, for a queue_layout()."""
    queue_dir, depth, hashed = layout
    return os.path.join(queue_dir_for(queue_dir, queue, queue_id, depth, hashed), queue_id)


def fsync_dir(path: str) -> None:
    """Make a rename or unlink in directory path durable."""
    durable.fsync_dir(path)


def make_queue_dirs(path: str, mode: int = 0o700, owner: tuple[int, int] | None = None) -> None:
    """Create directory path and whatever is missing above it, durably.

    Each directory made is fsynced into its parent before the next level
    is made, so with hash_queue_depth 2 or more neither level is lost in a
    crash (a file renamed into a lost directory would be lost with it).
    owner (uid, gid): given to every directory made (root writing into
    mail_owner's tree)."""
    missing = []
    while not os.path.isdir(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, mode)
        except FileExistsError:
            pass  # made by another process: its entry may not be synced yet
        else:
            if owner is not None:
                os.chown(directory, *owner)
        fsync_dir(os.path.dirname(directory))


class DirSyncer:
    """Group commit for directory fsyncs.

    Every caller of sync() returns only after an fsync of the directory
    that started after its call; callers that arrive while one fsync runs
    share the next one. Under load one fsync makes many renames durable.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.cond = threading.Condition()
        self.requested = 0  # calls so far
        self.done = 0  # calls covered by a finished fsync
        self.running = False
        self.fsyncs = 0  # fsyncs actually done, for tests and curiosity

    def sync(self) -> None:
        with self.cond:
            self.requested += 1
            mine = self.requested
            while self.done < mine:
                if self.running:
                    self.cond.wait()
                    continue
                self.running = True
                covered = self.requested
                self.cond.release()
                try:
                    fsync_dir(self.path)
                    self.fsyncs += 1
                finally:
                    self.cond.acquire()
                    self.running = False
                    self.cond.notify_all()
                self.done = max(self.done, covered)
            self.cond.notify_all()


_syncers: dict[str, DirSyncer] = {}
_syncers_lock = threading.Lock()


def sync_dir_shared(path: str) -> None:
    """fsync directory path, sharing the fsync with concurrent callers (DirSyncer)."""
    syncer = _syncers.get(path)
    if syncer is None:
        with _syncers_lock:
            syncer = _syncers.setdefault(path, DirSyncer(path))
    syncer.sync()


def size_payload(content_offset: int, content_size: int, nrcpt: int, flags: int) -> bytes:
    w = R.SIZE_FIELD_WIDTH
    return f"{content_offset:{w}d} {content_size:{w}d} {nrcpt:{w}d} {flags:{w}d}".encode()


class QueueFileWriter:
    """Build one queue file; see the module docstring."""

    def __init__(
        self,
        queue_dir: str,
        queue: str = "incoming",
        *,
        hash_depth: int = 1,
        hashed: tuple = HASH_QUEUE_NAMES_DEFAULT,
        line_limit: int = 2048,
        when: float | None = None,
        arrival: float | None = None,
    ) -> None:
        """when: the creation time, which the queue id encodes (default now);
        arrival: the arrival time the file records (default when)."""
        self.queue_dir = queue_dir
        self.queue = queue
        self.hash_depth = hash_depth
        self.hashed = tuple(hashed)
        self.created = time.time() if when is None else when
        self.arrival = self.created if arrival is None else arrival
        top = os.path.join(queue_dir, queue)
        self.tmp_path = os.path.join(top, f".{os.getpid()}.{time.monotonic_ns()}{TMP_SUFFIX}")
        self.fd = os.open(self.tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        st = os.fstat(self.fd)
        if os.geteuid() == 0:
            # root (the local agent forwarding a message) writes for mail_owner
            owner = os.stat(top)
            if (st.st_uid, st.st_gid) != (owner.st_uid, owner.st_gid):
                os.fchown(self.fd, owner.st_uid, owner.st_gid)
        self.queue_id = make_queue_id(self.created, st.st_ino)
        self.buf = bytearray()
        self.written = 0  # bytes already in the file
        self.nrcpt = 0
        self.flags = 0
        self.content_offset = 0
        self.content_size = 0
        self.encoder = ContentEncoder(line_limit)
        self.state = "new"  # new -> envelope -> content -> extra -> sealed -> done
        self.buf += encode_record(R.REC_TYPE_SIZE, size_payload(0, 0, 0, 0))

    # ---- writing
    @property
    def offset(self) -> int:
        return self.written + len(self.buf)

    def _put(self, rtype: int, payload: bytes) -> int:
        where = self.offset
        self.buf += encode_record(rtype, payload)
        if len(self.buf) >= WRITE_BUFFER:
            self._flush()
        return where

    def _flush(self) -> None:
        view = memoryview(self.buf)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]
        self.written += len(self.buf)
        self.buf = bytearray()

    def _recipient(self, rcpt: Recipient) -> None:
        if rcpt.dsn_orcpt:
            self._put(R.REC_TYPE_DSN_ORCPT, rcpt.dsn_orcpt.encode())
        if rcpt.notify:
            self._put(R.REC_TYPE_DSN_NOTIFY, str(rcpt.notify).encode())
        if rcpt.orig and rcpt.orig != rcpt.address:
            self._put(R.REC_TYPE_ORCP, rcpt.orig.encode())
        rcpt.offset = self._put(R.REC_TYPE_RCPT, rcpt.address.encode())
        self.nrcpt += 1

    def write_envelope(
        self,
        sender: str,
        recipients: list[Recipient],
        attrs: dict[str, str] | None = None,
        full_name: str = "",
        flags: int = 0,
        warn_time: float = 0,
    ) -> None:
        """Write arrival time, attributes, sender and recipients.

        warn_time: when a delay warning is due (0: never); qmgr clears it
        in place once the warning is sent (set_warn_time)."""
        if self.state != "new":
            raise RuntimeError("envelope already written")
        micros = int(round(self.arrival * 1_000_000))
        self._put(R.REC_TYPE_TIME, b"%d %d" % divmod(micros, 1_000_000))
        if warn_time > 0:
            self._put(R.REC_TYPE_WARN, _warn_payload(warn_time))
        for name, value in (attrs or {}).items():
            self._put(R.REC_TYPE_ATTR, f"{name}={value}".encode())
        if full_name:
            self._put(R.REC_TYPE_FULL, full_name.encode())
        self._put(R.REC_TYPE_FROM, sender.encode())
        for rcpt in recipients:
            self._recipient(rcpt)
        self.flags |= flags
        self.content_offset = self._put(R.REC_TYPE_MESG, b"")
        self.state = "content"

    def write_content(self, chunk: bytes) -> None:
        """Append message content; lines end in LF or CRLF, chunks cut anywhere."""
        if self.state != "content":
            raise RuntimeError("content written outside the content section")
        self.content_size += len(chunk)
        self.buf += self.encoder.feed(chunk)
        if len(self.buf) >= WRITE_BUFFER:
            self._flush()

    def reserve_lines(self, lines: list[bytes]) -> list[int]:
        """Write lines as the first content lines, to be overwritten by patch()
        before seal(); return the file offset of each line's bytes.

        For content known only at the end (a DKIM signature over the body)
        that must stand first: each line must keep its length."""
        if self.state != "content" or self.content_size:
            raise RuntimeError("lines can be reserved only at the start of the content")
        offsets = []
        for line in lines:
            if len(line) > self.encoder.limit or b"\n" in line:
                raise ValueError("a reserved line must be one short line")
            self._put(R.REC_TYPE_NORM, line)
            offsets.append(self.offset - len(line))  # the payload ends the record
            self.content_size += len(line) + 1
        return offsets

    def patch(self, offset: int, data: bytes) -> None:
        """Overwrite bytes that reserve_lines() wrote, before seal()."""
        if self.state not in ("content", "extra"):
            raise RuntimeError("patch after seal")
        self._flush()
        view = memoryview(data)
        while view:
            n = os.pwrite(self.fd, view, offset)
            view, offset = view[n:], offset + n

    def end_content(self) -> None:
        if self.state != "content":
            raise RuntimeError("no content section open")
        self.buf += self.encoder.flush()
        self._put(R.REC_TYPE_XTRA, b"")
        self.state = "extra"

    def add_recipient(self, rcpt: Recipient) -> None:
        """Add a recipient in the extracted section (after the content)."""
        if self.state == "content":
            self.end_content()
        self._recipient(rcpt)

    def add_attr(self, name: str, value: str) -> None:
        """Add an envelope attribute in the extracted section (after the content)."""
        if self.state == "content":
            self.end_content()
        if self.state != "extra":
            raise RuntimeError("attribute outside the extracted section")
        self._put(R.REC_TYPE_ATTR, f"{name}={value}".encode())

    def commit(self, queue: str | None = None) -> str:
        """Finish, fsync and rename into place; return the queue id.

        queue names another queue directory (say "hold") to rename into
        instead of the one the writer was opened in; it must be on the
        same file system, as Postfix's queue directories are.
        """
        self.seal(queue)
        return self.sync()

    def seal(self, queue: str | None = None) -> None:
        """commit() up to the fsync: the last records and the size header.

        It only writes; sync() then does the waiting, and can run on
        another thread while the caller goes on."""
        if self.state == "content":
            self.end_content()
        if self.state != "extra":
            raise RuntimeError("commit without an envelope")
        self._put(R.REC_TYPE_END, b"")
        self._flush()
        self._header = encode_record(
            R.REC_TYPE_SIZE,
            size_payload(self.content_offset, self.content_size, self.nrcpt, self.flags),
        )
        if queue is not None:
            self.queue = queue
        self.state = "sealed"

    def sync(self) -> str:
        """The durable part of commit(), after seal(); return the queue id."""
        if self.state != "sealed":
            raise RuntimeError("sync before seal")
        target_dir = queue_dir_for(
            self.queue_dir, self.queue, self.queue_id, self.hash_depth, self.hashed
        )
        final = os.path.join(target_dir, self.queue_id)
        fd, self.fd = self.fd, -1  # seal_file closes it, whatever happens
        try:
            # header, fsync, close and rename in one go (one GIL release)
            durable.seal_file(fd, self._header, self.tmp_path, final)
        except FileNotFoundError:
            if os.path.isdir(target_dir) or not os.path.exists(self.tmp_path):
                raise
            # a new hashed subdirectory must itself survive a crash
            make_queue_dirs(target_dir)
            os.rename(self.tmp_path, final)
        try:
            sync_dir_shared(target_dir)
        except OSError:
            # the client will hear a temporary error and send again: the
            # renamed file must not stay behind as a duplicate
            try:
                os.unlink(final)
            except OSError:
                pass
            raise
        self.state = "done"
        self.path = final
        return self.queue_id

    def abort(self) -> None:
        """Throw the file away; safe to call more than once."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.state != "done":
            try:
                os.unlink(self.tmp_path)
            except FileNotFoundError:
                pass
            self.state = "done"

    def __enter__(self) -> QueueFileWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.abort()


# ---- reading


def _parse_size(payload: bytes, path: str) -> tuple[int, int, int, int]:
    try:
        offset, size, nrcpt, flags = (int(x) for x in payload.split())
    except ValueError:
        raise QueueFileError(f"{path}: bad size record") from None
    return offset, size, nrcpt, flags


def _read(path: str, with_mode: bool) -> tuple[bytes, int]:
    """(the whole queue file, its mode when asked, else 0); QueueFileError when it
    cannot be read (but not when missing)."""
    try:
        with open(path, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode if with_mode else 0
            return f.read(), mode
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise QueueFileError(f"{path}: cannot read: {exc.strerror}") from exc


def read_file(path: str) -> bytes:
    """The whole queue file; QueueFileError when it cannot be read (but not when missing)."""
    return _read(path, False)[0]


FORCE_EXPIRE_MODE = stat.S_IXUSR  # postsuper -e marks a queue file so, as Postfix does


def read_queue_file(path: str) -> QueueMessage:
    """Read the envelope of the queue file at path; QueueFileError when damaged.

    forced_expire is set when the file carries postsuper -e's mark."""
    data, mode = _read(path, True)
    msg = parse_queue_file(data, path)
    msg.forced_expire = bool(mode & FORCE_EXPIRE_MODE)
    return msg


class Envelope(NamedTuple):
    """What the queue listing shows of a message (read_envelope())."""

    arrival: int  # whole seconds
    content_size: int
    sender: str
    pending: list[tuple[int, str]]  # (offset, address) of each recipient not done
    forced_expire: bool


def read_envelope(path: str) -> Envelope:
    """The listing's view of the queue file at path, read no further than needed.

    FileNotFoundError when it is gone; QueueFileError when damaged or unreadable."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise QueueFileError(f"{path}: cannot read: {exc.strerror}") from exc
    try:
        st = os.fstat(fd)
        data = os.read(fd, ENVELOPE_CHUNK)
        size = st.st_size
        if len(data) < size:
            found = scan_envelope(data, False)
            # no recipient after the content, and the file is whole
            if found is not None and found[2] == found[3]:
                if os.pread(fd, 2, size - 2) == END_RECORD:
                    return Envelope(found[0], found[1], found[4], found[5], _expired(st))
            data += _read_rest(fd)
        found = scan_envelope(data, True)
    except OSError as exc:
        raise QueueFileError(f"{path}: cannot read: {exc.strerror}") from exc
    finally:
        os.close(fd)
    if found is not None:
        return Envelope(found[0], found[1], found[4], found[5], _expired(st))
    msg = parse_queue_file(data, path)  # says what is wrong, or takes what the scan would not
    pending = [(r.offset, r.address) for r in msg.recipients if not r.done]
    return Envelope(int(msg.arrival), msg.content_size, msg.sender, pending, _expired(st))


def _read_rest(fd: int) -> bytes:
    pieces = []
    while True:
        piece = os.read(fd, 1 << 20)
        if not piece:
            return b"".join(pieces)
        pieces.append(piece)


def _expired(st: os.stat_result) -> bool:
    return bool(st.st_mode & FORCE_EXPIRE_MODE)


def parse_queue_file(data: bytes, path: str) -> QueueMessage:
    """The envelope of a queue file already read into data (content records skipped)."""
    try:
        records, _ = decode_records(data, 0, True, True)
    except RecordError as exc:
        raise QueueFileError(f"{path}: {exc}") from None
    if not records or records[0][1] != R.REC_TYPE_SIZE:
        raise QueueFileError(f"{path}: no size record at the start")
    if records[-1][1] != R.REC_TYPE_END:
        raise QueueFileError(f"{path}: truncated: no end record")
    msg = QueueMessage(queue_id=os.path.basename(path), path=path, file_size=len(data))
    msg.content_offset, msg.content_size, _, msg.flags = _parse_size(records[0][2], path)
    section = "envelope"
    pending: dict[str, object] = {}
    for offset, rtype, payload in records[1:-1]:
        if section == "content":
            if rtype == R.REC_TYPE_XTRA:
                section = "extra"
            elif rtype not in (R.REC_TYPE_NORM, R.REC_TYPE_CONT):
                raise QueueFileError(f"{path}: record {chr(rtype)!r} inside the content")
            continue
        if rtype in (R.REC_TYPE_RCPT, R.REC_TYPE_DONE):
            msg.recipients.append(
                Recipient(
                    address=payload.decode("utf-8", "surrogateescape"),
                    orig=str(pending.pop("orig", "")),
                    dsn_orcpt=str(pending.pop("orcpt", "")),
                    notify=int(pending.pop("notify", 0)),
                    offset=offset,
                    done=rtype == R.REC_TYPE_DONE,
                )
            )
        elif rtype == R.REC_TYPE_ORCP:
            pending["orig"] = payload.decode("utf-8", "surrogateescape")
        elif rtype == R.REC_TYPE_DSN_ORCPT:
            pending["orcpt"] = payload.decode("utf-8", "surrogateescape")
        elif rtype == R.REC_TYPE_DSN_NOTIFY:
            if not payload.isdigit():
                raise QueueFileError(f"{path}: bad NOTIFY record at offset {offset}")
            pending["notify"] = int(payload)
        elif section == "envelope" and rtype == R.REC_TYPE_TIME:
            try:
                sec, usec = (int(x) for x in payload.split())
            except ValueError:
                raise QueueFileError(f"{path}: bad time record") from None
            msg.arrival = sec + usec / 1_000_000
        elif section in ("envelope", "extra") and rtype == R.REC_TYPE_ATTR:
            name, eq, value = payload.decode("utf-8", "surrogateescape").partition("=")
            if not eq:
                raise QueueFileError(f"{path}: bad attribute record at offset {offset}")
            msg.attrs[name] = value
        elif section == "envelope" and rtype == R.REC_TYPE_FULL:
            msg.full_name = payload.decode("utf-8", "surrogateescape")
        elif section == "envelope" and rtype == R.REC_TYPE_FROM:
            msg.sender = payload.decode("utf-8", "surrogateescape")
        elif rtype == R.REC_TYPE_WARN:
            try:
                msg.warn_time = float(payload or 0)
            except ValueError:
                raise QueueFileError(f"{path}: bad warning time at offset {offset}") from None
            msg.warn_offset = offset
        elif section == "envelope" and rtype == R.REC_TYPE_MESG:
            if offset != msg.content_offset:
                raise QueueFileError(f"{path}: content offset does not match the size record")
            section = "content"
        else:
            raise QueueFileError(
                f"{path}: unexpected record {chr(rtype)!r} at offset {offset} ({section})"
            )
    if section != "extra":
        raise QueueFileError(f"{path}: no end of content")
    return msg


def iter_content(
    path: str, msg: QueueMessage | None = None, data: bytes | None = None
) -> Iterator[bytes]:
    """Yield the content lines of the queue file (without line ends); data: the file, read."""
    if data is None:
        data = read_file(path)
    start = msg.content_offset if msg else 0
    try:
        records, _ = decode_records(data, start, True)
    except RecordError as exc:
        raise QueueFileError(f"{path}: {exc}") from None
    pieces: list[bytes] = []
    seen_mesg = False
    for _, rtype, payload in records:
        if rtype == R.REC_TYPE_MESG:
            seen_mesg = True
            continue
        if not seen_mesg:
            continue
        if rtype == R.REC_TYPE_CONT:
            pieces.append(payload)
        elif rtype == R.REC_TYPE_NORM:
            if pieces:
                pieces.append(payload)
                yield b"".join(pieces)
                pieces = []
            else:
                yield payload
        elif rtype == R.REC_TYPE_XTRA:
            return


def read_content(
    path: str, msg: QueueMessage, data: bytes | None = None, line_end: bytes = b"\n"
) -> tuple[bytes, int]:
    """(the content with line_end after every line, the longest line's length)."""
    if data is None:
        data = read_file(path)
    try:
        return content_text(data, msg.content_offset, line_end)
    except RecordError as exc:
        raise QueueFileError(f"{path}: {exc}") from None


def _warn_payload(when: float) -> bytes:
    return f"{int(when):>{R.SIZE_FIELD_WIDTH}d}".encode()


def set_warn_time(path: str, offset: int, when: float) -> None:
    """Rewrite the delay-warning record at offset in place (0: no warning), durably."""
    payload = _warn_payload(when)
    record = encode_record(R.REC_TYPE_WARN, payload)
    fd = os.open(path, os.O_RDWR)
    try:
        if os.pread(fd, len(record) - len(payload), offset) != record[: -len(payload)]:
            raise QueueFileError(f"{path}: no delay warning record at offset {offset}")
        os.pwrite(fd, record, offset)
        os.fdatasync(fd)
    finally:
        os.close(fd)


def set_flags(path: str, flags: int) -> None:
    """Rewrite the flags field of the size record in place, durably."""
    fd = os.open(path, os.O_RDWR)
    try:
        head = os.pread(fd, 16 + SIZE_PAYLOAD_LEN, 0)  # type, length, payload
        try:
            records, _ = decode_records(head, 0)
        except RecordError as exc:
            raise QueueFileError(f"{path}: {exc}") from None
        if not records or records[0][1] != R.REC_TYPE_SIZE:
            raise QueueFileError(f"{path}: no size record at the start")
        offset, size, nrcpt, _ = _parse_size(records[0][2], path)
        record = encode_record(R.REC_TYPE_SIZE, size_payload(offset, size, nrcpt, flags))
        os.pwrite(fd, record, 0)
        os.fdatasync(fd)
    finally:
        os.close(fd)


def mark_done(path: str, offsets: list[int]) -> None:
    """Mark the recipients at offsets done, durably, with one sync."""
    if not offsets:
        return
    bad = durable.mark_done_at(path, offsets)
    if bad >= 0:
        raise QueueFileError(f"{path}: no recipient record at offset {bad}")


def move_to_queue(queue_dir: str, path: str, queue: str) -> str:
    """Move a queue file into another (unhashed) queue, durably; return its new path."""
    target_dir = os.path.join(queue_dir, queue)
    make_queue_dirs(target_dir)
    target = os.path.join(target_dir, os.path.basename(path))
    os.rename(path, target)
    fsync_dir(target_dir)
    return target


def move_to_corrupt(queue_dir: str, path: str) -> str:
    """Move a damaged queue file to corrupt/; return its new path."""
    return move_to_queue(queue_dir, path, "corrupt")


def find_queue_file(
    queue_dir: str,
    queue_id: str,
    queues: tuple[str, ...],
    depth: int = 1,
    hashed: tuple = HASH_QUEUE_NAMES_DEFAULT,
) -> tuple[str, str] | None:
    """Return (queue, path) of queue_id in the first of queues that has it."""
    if not is_queue_id(queue_id):
        return None
    for queue in queues:
        path = queue_path((queue_dir, depth, hashed), queue, queue_id)
        if os.path.exists(path):
            return queue, path
    return None
