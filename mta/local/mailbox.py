"""local.mailbox - write one message into an mbox file or a Maildir

SYNOPSIS
    from mta.local.mailbox import MailCopy, render, append_mbox, deliver_maildir
    data = render(copy, recipient="u@example.com", from_line=True, quote=True, blank=True)
    outcome = append_mbox("/var/mail/u", data, lock_settings, size_limit, "mailbox")
    outcome = deliver_maildir("/home/u/Maildir/", data_without_from_line, "mx.example.com")

DESCRIPTION
    render() builds the bytes that go into a mailbox, a file or a
    command: optionally the "From SENDER  DATE" envelope line (sender
    MAILER-DAEMON when null), then Return-Path: <sender>, X-Original-To:
    (the recipient as first given, when known), Delivered-To: (the final
    recipient), then the queued content with LF line ends; with quote,
    a ">" goes before every content line that starts with "From "; with
    blank, an empty line ends the message (mbox separation).

    append_mbox() opens the file for appending (created 0600 when
    missing, never through a symbolic link), holds the locks of
    local.lock, remembers the size, writes, and fsyncs. On any write
    error the file is truncated back to the remembered size, so no
    partial message stays behind: a full disk (ENOSPC) defers with
    4.3.0 "... No space left on device"; EFBIG and EDQUOT, and a
    message that would take the file past size_limit, bounce with 5.2.2
    (mailbox full). A destination that is not a regular file bounces,
    except for character devices (/dev/null) when allow_devices.
    With create_owner (a spool mailbox written with root's privileges
    for its recipient) a missing file is created for the recipient and
    given to them, a file with more than one hard link is deferred
    (4.2.0), and with strict_owner (strict_mailbox_ownership) so is a
    file the recipient does not own, as Postfix does.

    deliver_maildir() writes DIR/tmp/UNIQUE (O_EXCL), fsyncs it, links
    it to DIR/new/UNIQUE2 where UNIQUE2 is "SECONDS.VdevIinodeMusec.HOST"
    as Postfix names it, removes the tmp name and fsyncs new/; the
    tmp/, new/ and cur/ directories are created (0700) when missing.

SECURITY
    Runs with the privileges of the recipient (see local.privs): it
    writes where it is told, refusing symbolic links at the last
    component of an mbox path.

STANDARDS
    mbox: the traditional UNIX "From " format; Maildir: D. J. Bernstein's
    maildir(5) description.
"""

from __future__ import annotations

import errno
import itertools
import os
import socket
import stat
import time
from dataclasses import dataclass

from mta import log
from mta.local.lock import LockError, LockSettings, mailbox_locked
from mta.local.privs import Outcome, bounce, defer, sent
from mta.queue.queue_file import fsync_dir

MAILDIR_SUBDIRS = ("tmp", "new", "cur")
_COUNTER = itertools.count()


@dataclass
class MailCopy:
    """The message being delivered, as local delivery copies it."""

    sender: str
    lines: list[bytes]  # content lines without line ends
    arrival: float = 0.0


def from_line(sender: str, when: float | None = None) -> bytes:
    stamp = time.asctime(time.localtime(time.time() if when is None else when))
    return f"From {sender or 'MAILER-DAEMON'}  {stamp}\n".encode("utf-8", "surrogateescape")


def render(
    copy: MailCopy,
    *,
    recipient: str = "",
    orig_rcpt: str = "",
    from_line_: bool = False,
    quote: bool = False,
    blank: bool = False,
    delivered_to: bool = True,
    return_path: bool = True,
) -> bytes:
    """The bytes to store for copy; see the module docstring."""
    out: list[bytes] = []
    if from_line_:
        out.append(from_line(copy.sender))
    head = []
    if return_path:
        head.append(f"Return-Path: <{copy.sender}>\n")
    if orig_rcpt:
        head.append(f"X-Original-To: {orig_rcpt}\n")
    if delivered_to and recipient:
        head.append(f"Delivered-To: {recipient}\n")
    out.append("".join(head).encode("utf-8", "surrogateescape"))
    if quote:
        out.extend(
            (b">" + line if line.startswith(b"From ") else line) + b"\n" for line in copy.lines
        )
    else:
        out.extend(line + b"\n" for line in copy.lines)
    if blank:
        out.append(b"\n")
    return b"".join(out)


def _error_outcome(what: str, exc: OSError) -> Outcome:
    text = f"{what}: {exc.strerror or exc}"
    if exc.errno in (errno.EFBIG, errno.EDQUOT):
        return bounce(f"{text} (mailbox full)", "5.2.2")
    if exc.errno == errno.ENOSPC:
        return defer(text, "4.3.0")
    return defer(text, "4.2.0")


def _open_mbox(path: str, exclusive_create: bool) -> tuple[int, bool]:
    """(descriptor, whether this call created the file); never through a symbolic link.
    With exclusive_create a missing file is made with O_EXCL, so a file that is there
    is never taken for one just made (and given to the recipient)."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC
    if not exclusive_create:
        return os.open(path, flags | os.O_CREAT, 0o600), False
    for _ in range(2):
        try:
            return os.open(path, flags), False
        except FileNotFoundError:
            pass
        try:
            return os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o600), True
        except FileExistsError:
            continue  # made by someone else in between: open it as it is
    return os.open(path, flags), False


def append_mbox(
    path: str,
    data: bytes,
    settings: LockSettings,
    size_limit: int = 0,
    what: str = "mailbox",
    *,
    allow_devices: bool = False,
    create_owner: tuple[int, int] | None = None,
    strict_owner: bool = True,
) -> Outcome:
    """Append data to the mbox file at path under locks; see the module docstring."""
    label = f"cannot update {what} {path}"
    try:
        fd, created = _open_mbox(path, create_owner is not None)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return bounce(f"{label}: file is a symbolic link", "5.2.0")
        return _error_outcome(label, exc)
    try:
        st = os.fstat(fd)
        device = stat.S_ISCHR(st.st_mode)
        if not stat.S_ISREG(st.st_mode) and not (allow_devices and device):
            return bounce(f"{label}: destination is not a regular file", "5.2.0")
        if create_owner is not None and not device:
            # written with root's privileges for the recipient: only a file of theirs
            if st.st_nlink > 1:
                return defer(f"{label}: file has {st.st_nlink} hard links", "4.2.0")
            if created:
                os.fchown(fd, *create_owner)
            elif strict_owner and st.st_uid != create_owner[0]:
                log.warning(
                    'specify "strict_mailbox_ownership = no" to ignore mailbox ownership mismatch'
                )
                return defer(f"destination {path} is not owned by recipient", "4.2.0")
        try:
            with mailbox_locked(path, fd, settings if not device else LockSettings(())):
                size = os.fstat(fd).st_size
                if size_limit and not device and size + len(data) > size_limit:
                    return bounce(
                        f"{label}: message would exceed the size limit (mailbox full)", "5.2.2"
                    )
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
                    if not device:
                        os.fsync(fd)
                except OSError as exc:
                    if not device:
                        try:
                            os.ftruncate(fd, size)
                        except OSError:
                            pass
                    return _error_outcome(label, exc)
        except LockError as exc:
            return defer(f"{label}: {exc}", "4.2.0")
    except OSError as exc:
        return _error_outcome(label, exc)
    finally:
        os.close(fd)
    return sent(f"delivered to {what}" if what != "file" else f"delivered to file: {path}")


def _safe_host(hostname: str) -> str:
    return hostname.replace("/", "\\057").replace(":", "\\072")


def deliver_maildir(
    directory: str, data: bytes, hostname: str = "", what: str = "maildir"
) -> Outcome:
    """Deliver data into the Maildir at directory; see the module docstring."""
    host = _safe_host(hostname or socket.gethostname())
    directory = directory.rstrip("/")
    try:
        for sub in MAILDIR_SUBDIRS:
            os.makedirs(os.path.join(directory, sub), mode=0o700, exist_ok=True)
    except OSError as exc:
        return _error_outcome(f"create maildir file {directory}", exc)
    now = time.time()
    tmp = os.path.join(directory, "tmp", f"{int(now)}.P{os.getpid()}Q{next(_COUNTER)}.{host}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        return _error_outcome(f"create maildir file {tmp}", exc)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
            st = os.fstat(fd)
        finally:
            os.close(fd)
        usec = int((now - int(now)) * 1_000_000)
        name = f"{int(now)}.V{st.st_dev:x}I{st.st_ino:x}M{usec}.{host}"
        new = os.path.join(directory, "new", name)
        os.link(tmp, new)
        os.unlink(tmp)
        fsync_dir(os.path.join(directory, "new"))
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        return _error_outcome(f"maildir delivery failed: {directory}", exc)
    return sent(f"delivered to {what}")
