"""qmgr.scan - walk a queue directory, hashed or not

SYNOPSIS
    from mta.qmgr.scan import iter_queue
    for queue_id, path in iter_queue(queue_dir, "deferred", hash_depth=1,
                                     hashed=("deferred", "defer")):
        ...

DESCRIPTION
    Yields the queue files of one queue in directory order, descending
    into the hashed subdirectories when the queue is listed in
    hash_queue_names. Temporary files (a leading dot or the ".tmp"
    suffix) and anything that is not a plain file are skipped. A
    directory that vanishes or cannot be read while walking is skipped
    too; the next scan sees it again.

SECURITY
    Names come from the spool, which only mail_owner writes; they are
    still checked to be plain queue ids before use.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from mta.queue.queue_file import TMP_SUFFIX


def _is_queue_id(name: str) -> bool:
    return bool(name) and name[0] != "." and not name.endswith(TMP_SUFFIX) and name.isalnum()


def iter_queue(
    queue_dir: str, queue: str, hash_depth: int = 1, hashed: tuple[str, ...] = ()
) -> Iterator[tuple[str, str]]:
    """(queue_id, path) of every queue file in queue."""
    top = os.path.join(queue_dir, queue)
    depth = hash_depth if queue in hashed else 0
    yield from _walk(top, depth)


def _walk(directory: str, depth: int) -> Iterator[tuple[str, str]]:
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        try:
            if depth > 0:
                if entry.is_dir(follow_symlinks=False) and len(entry.name) == 1:
                    yield from _walk(entry.path, depth - 1)
                elif entry.is_file(follow_symlinks=False) and _is_queue_id(entry.name):
                    # a file left unhashed (hash_queue_names changed): still ours
                    yield entry.name, entry.path
            elif entry.is_file(follow_symlinks=False) and _is_queue_id(entry.name):
                yield entry.name, entry.path
        except OSError:
            continue
