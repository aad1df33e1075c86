"""queue.showq - list the mail queue, as mailq and postqueue -p/-j show it

SYNOPSIS
    from mta.queue.showq import iter_entries, iter_listing, format_entry, format_footer
    for text in iter_listing(iter_entries(cfg), as_json=False):
        sys.stdout.write(text)                         # what mailq prints, piece by piece

DESCRIPTION
    iter_entries() walks the queues Postfix's showq reads (maildrop,
    hold, incoming, active, deferred), one queue file at a time, and
    yields a QueueEntry per message: queue name and id, arrival time,
    message size (the content, as the size record gives it), sender,
    and the recipients that are not done yet, each with the reason of
    its last deferral from the message's defer log. Memory stays
    bounded whatever the queue's size: nothing is kept between files.

    Each queue file is read only as far as its envelope
    (queue_file.read_envelope(): one read, the record kernel's scan),
    and the defer log is opened only for a message with recipients to
    show in the deferred, active or hold queue; a message without one
    costs a failed open, nothing more.

    A file that vanishes while the listing runs (delivered meanwhile)
    is passed over; a damaged one is listed with its id and the word
    "(damaged queue file)" instead of a sender, so the administrator
    sees it; a damaged defer log gives no reasons, never an error.

    format_entry() writes Postfix's sendmail-style listing, column for
    column as postqueue -p 3.7 prints it with enable_long_queue_ids = yes
    (mta's queue ids are long ones): the queue id with "*" when the
    message is active, "!" when it is on hold and "#" when postsuper -e
    marked it to expire, the size, the arrival
    time, the sender (MAILER-DAEMON for the null sender), then the
    recipients indented under the sender, each group of recipients with
    the same delay reason led by that reason in parentheses, set to end
    in column 78 (a longer one starts in column 0 and is not folded).
    format_footer() gives "-- N Kbytes in M Requests." or "Mail queue
    is empty".

    iter_listing() turns entries into the text mailq prints (header,
    messages, footer) or into postqueue -j's lines, in pieces of whole
    messages of about LISTING_BATCH characters, so the caller writes in
    bulk and still streams; both mta queue and the showq service print
    it.

    QueueEntry.as_json() gives postqueue -j's object: queue_name,
    queue_id, arrival_time, message_size, forced_expire, sender
    (MAILER-DAEMON for the null sender, as Postfix writes it),
    recipients (address, and delay_reason when there is one).
    format_json() gives the line json.dumps(entry.as_json(),
    ensure_ascii=False) would, without building the object.

SECURITY
    Reads queue files and logs, so it needs mail_owner's (or root's)
    read access to the queue; it never writes.

SEE ALSO
    mta/queue/queue_file.py (read_envelope), mta/bounce/logfile.py
    (read_reasons), mta/_speedups/record.pyx (scan_envelope)
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from json.encoder import encode_basestring

from mta.bounce import logfile
from mta.qmgr.scan import iter_queue
from mta.queue.queue_file import QueueFileError, queue_layout, read_envelope

QUEUES = ("maildrop", "hold", "incoming", "active", "deferred")  # as Postfix's showq reads them
MARKS = {"active": "*", "hold": "!"}
# mta's queue ids are long ones: the columns of Postfix's listing with
# enable_long_queue_ids = yes
ID_WIDTH = 17  # the queue id and its mark
ADDR_COLUMN = ID_WIDTH + 1 + 8 + 1 + 19 + 1  # recipients line up under the sender
REASON_RIGHT = 78  # a delay reason ends in this column, unless it is longer
ADDR_INDENT = " " * ADDR_COLUMN
ARRIVAL_MEMO = 4096  # arrival times whose text format_entry() keeps
LOGGED_QUEUES = ("deferred", "active", "hold")  # messages there may have a defer log
LISTING_BATCH = 1 << 15  # iter_listing() gathers about this many characters per piece


@dataclass
class QueueEntry:
    queue_name: str
    queue_id: str
    arrival_time: int = 0
    message_size: int = 0
    sender: str = ""
    recipients: list[tuple[str, str]] = field(default_factory=list)  # (address, delay reason)
    damaged: bool = False
    forced_expire: bool = False

    def as_json(self) -> dict:
        rcpts = []
        for address, reason in self.recipients:
            item = {"address": address}
            if reason:
                item["delay_reason"] = reason
            rcpts.append(item)
        return {
            "queue_name": self.queue_name,
            "queue_id": self.queue_id,
            "arrival_time": self.arrival_time,
            "message_size": self.message_size,
            "forced_expire": self.forced_expire,
            "sender": show_sender(self.sender),
            "recipients": rcpts,
        }


def read_entry(
    layout: tuple,
    queue: str,
    queue_id: str,
    path: str,
    defer_path: Callable[[str], str] | None = None,
) -> QueueEntry | None:
    """The entry for one queue file; None when it is gone.

    layout: (queue_directory, hash_queue_depth, hash_queue_names);
    defer_path: where a queue id's defer log is (default log_path_of(layout, "defer"))."""
    entry = QueueEntry(queue, queue_id)
    try:
        env = read_envelope(path)
    except FileNotFoundError:
        return None
    except QueueFileError:
        entry.damaged = True
        return entry
    entry.arrival_time = env.arrival
    entry.message_size = env.content_size
    entry.sender = env.sender
    entry.forced_expire = env.forced_expire
    if env.pending and queue in LOGGED_QUEUES:
        where = (defer_path or log_path_of(layout, "defer"))(queue_id)
        reasons = logfile.read_reasons(where)
        entry.recipients = [(address, reasons.get(o, "")) for o, address in env.pending]
    else:
        entry.recipients = [(address, "") for _, address in env.pending]
    return entry


def log_path_of(layout: tuple, kind: str) -> Callable[[str], str]:
    """A function from queue id to logfile.log_path() of kind, with the layout worked out once."""
    queue_dir, depth, hashed = layout
    top = os.path.join(queue_dir, kind)
    if kind not in hashed or depth <= 0:
        return lambda queue_id: top + "/" + queue_id
    stop = -depth - 1
    return lambda queue_id: "/".join((top, *queue_id[:stop:-1], queue_id))


def iter_entries(cfg, queues: tuple[str, ...] = QUEUES) -> Iterator[QueueEntry]:
    """Every message in queues, read one file at a time."""
    layout = queue_layout(cfg)
    defer_path = log_path_of(layout, "defer")
    for queue in queues:
        for queue_id, path in iter_queue(layout[0], queue, layout[1], layout[2]):
            entry = read_entry(layout, queue, queue_id, path, defer_path)
            if entry is not None:
                yield entry


def iter_listing(entries: Iterable[QueueEntry], as_json: bool) -> Iterator[str]:
    """The listing of entries (with the header and footer), in pieces of whole
    messages of about LISTING_BATCH characters."""
    count = total = size = 0
    batch: list[str] = []
    for entry in entries:
        if as_json:
            text = format_json(entry)
        else:
            if count == 0:
                batch.append(format_header())
            count += 1
            total += entry.message_size
            text = format_entry(entry)
        batch.append(text)
        size += len(text)
        if size >= LISTING_BATCH:
            yield "".join(batch)
            batch = []
            size = 0
    if not as_json:
        batch.append(format_footer(total, count))
    if batch:
        yield "".join(batch)


def format_json(entry: QueueEntry) -> str:
    """entry as one line of postqueue -j: json.dumps(entry.as_json(), ensure_ascii=False)."""
    rcpts = ", ".join(
        f'{{"address": {encode_basestring(address)}, "delay_reason": {encode_basestring(reason)}}}'
        if reason
        else f'{{"address": {encode_basestring(address)}}}'
        for address, reason in entry.recipients
    )
    return (
        f'{{"queue_name": {encode_basestring(entry.queue_name)}, '
        f'"queue_id": {encode_basestring(entry.queue_id)}, '
        f'"arrival_time": {int.__repr__(entry.arrival_time)}, '
        f'"message_size": {int.__repr__(entry.message_size)}, '
        f'"forced_expire": {"true" if entry.forced_expire else "false"}, '
        f'"sender": {encode_basestring(show_sender(entry.sender))}, '
        f'"recipients": [{rcpts}]}}\n'
    )


def format_header() -> str:
    return "----Queue ID----- --Size-- ---Arrival Time---- --Sender/Recipient------\n"


def format_entry(entry: QueueEntry) -> str:
    """One message in the sendmail-style listing, with its blank line after."""
    mark = MARKS.get(entry.queue_name, "") or ("#" if entry.forced_expire else "")
    qid = (entry.queue_id + mark).ljust(ID_WIDTH)
    if entry.damaged:
        return f"{qid} (damaged queue file)\n\n"
    when = _arrival_text.get(entry.arrival_time)
    if when is None:
        if len(_arrival_text) >= ARRIVAL_MEMO:
            _arrival_text.clear()
        when = time.strftime("%a %b %e %H:%M:%S", time.localtime(entry.arrival_time)).ljust(19)
        _arrival_text[entry.arrival_time] = when
    lines = [f"{qid} {entry.message_size:>8} {when} {show_sender(entry.sender)}\n"]
    last_reason = None
    for address, reason in entry.recipients:
        if reason and reason != last_reason:
            lines.append(f"({reason})".rjust(REASON_RIGHT) + "\n")
        last_reason = reason
        lines.append(ADDR_INDENT + address + "\n")
    lines.append("\n")
    return "".join(lines)


_arrival_text: dict[int, str] = {}  # arrival time -> its column, for messages that came together


def show_sender(sender: str) -> str:
    return sender or "MAILER-DAEMON"


def format_footer(total_bytes: int, count: int) -> str:
    if count == 0:
        return "Mail queue is empty\n"
    return f"-- {total_bytes // 1024} Kbytes in {count} Request{'s' if count != 1 else ''}.\n"
