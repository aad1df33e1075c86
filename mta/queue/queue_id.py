"""queue.queue_id - queue ids unique across processes and restarts, sorted by time

SYNOPSIS
    from mta.queue.queue_id import make_queue_id, queue_id_time, is_queue_id
    qid = make_queue_id(time.time(), os.fstat(fd).st_ino)   # "4K7sNz3Bq2z8Hq"
    queue_id_time(qid)                                       # float seconds

DESCRIPTION
    A queue id is the arrival time in seconds (6 digits) and microseconds
    (4 digits), then "z", then the inode number of the queue file, all
    written in a 51-character alphabet of digits and consonants in ASCII
    order. Two files that exist at once never share an inode on one file
    system, so an id made while its file exists is unique; the fixed-width
    time prefix makes the ids sort by arrival. The consonant alphabet
    keeps words out of ids; "z" is left out of it to serve as separator.
    These are the "long queue ids" of Postfix (enable_long_queue_ids).

SECURITY
    is_queue_id() is the check every tool applies to an id a user typed
    before it becomes part of a path.
"""

from __future__ import annotations

import re

ID_ALPHABET = "0123456789BCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxy"  # 51 symbols, ASCII order
ID_SEPARATOR = "z"  # between the time and the inode
ID_SECONDS_WIDTH = 6  # 51**6 seconds reach past the year 2500
ID_MICROS_WIDTH = 4  # 51**4 > 10**6
ID_TIME_WIDTH = ID_SECONDS_WIDTH + ID_MICROS_WIDTH

_BASE = len(ID_ALPHABET)
_VALUE = {ch: i for i, ch in enumerate(ID_ALPHABET)}
_ID_RE = re.compile(f"[{ID_ALPHABET}]{{{ID_TIME_WIDTH}}}{ID_SEPARATOR}[{ID_ALPHABET}]{{1,12}}\\Z")


def _encode(n: int, width: int = 0) -> str:
    digits = []
    while n:
        n, d = divmod(n, _BASE)
        digits.append(ID_ALPHABET[d])
    text = "".join(reversed(digits)) or ID_ALPHABET[0]
    return text.rjust(width, ID_ALPHABET[0])


def _decode(text: str) -> int:
    n = 0
    for ch in text:
        n = n * _BASE + _VALUE[ch]
    return n


def make_queue_id(when: float, inode: int) -> str:
    """Return the queue id of a file created at time when with inode number inode."""
    micros_total = int(round(when * 1_000_000))
    seconds, micros = divmod(micros_total, 1_000_000)
    return (
        _encode(seconds, ID_SECONDS_WIDTH)
        + _encode(micros, ID_MICROS_WIDTH)
        + ID_SEPARATOR
        + _encode(inode)
    )


def is_queue_id(text: str) -> bool:
    """True when text has the form of a queue id (and is safe in a path)."""
    return bool(_ID_RE.match(text))


def queue_id_time(qid: str) -> float:
    """Return the arrival time encoded in a queue id."""
    if not is_queue_id(qid):
        raise ValueError(f"not a queue id: {qid!r}")
    seconds = _decode(qid[:ID_SECONDS_WIDTH])
    micros = _decode(qid[ID_SECONDS_WIDTH:ID_TIME_WIDTH])
    return seconds + micros / 1_000_000


def queue_id_inode(qid: str) -> int:
    """Return the inode number encoded in a queue id."""
    if not is_queue_id(qid):
        raise ValueError(f"not a queue id: {qid!r}")
    return _decode(qid[ID_TIME_WIDTH + 1 :])
