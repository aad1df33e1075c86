"""queue.purge - remove the temporary files a crash left in the queue

SYNOPSIS
    from mta.queue.purge import purge_temporary
    removed = purge_temporary(queue_dir)      # "mta super -p", and the master's start

DESCRIPTION
    A writer that dies between creating its temporary file (a leading
    dot and ".tmp") and renaming it leaves the file behind; no reader
    ever looks at it. purge_temporary() walks the queue directory and
    removes every such file not modified for STALE_TMP seconds (so a
    sendmail still writing to maildrop/ keeps its file), logs each one
    and returns how many went: Postfix's postsuper -p, which its start
    also runs.

SECURITY
    Runs as root (master, mta super) or mail_owner; removes only files
    whose names mark them as temporary, and does not follow links.
"""

from __future__ import annotations

import os
import time

from mta import log
from mta.queue.queue_file import TMP_SUFFIX

STALE_TMP = 3600  # seconds after which a temporary file is left over for good


def purge_temporary(queue_dir: str, now: float | None = None) -> int:
    """Remove temporary files older than STALE_TMP under queue_dir; how many."""
    now = time.time() if now is None else now
    removed = 0
    for root, _dirs, files in os.walk(queue_dir):
        for name in files:
            if not (name.startswith(".") and name.endswith(TMP_SUFFIX)):
                continue
            path = os.path.join(root, name)
            try:
                if now - os.lstat(path).st_mtime > STALE_TMP:
                    os.unlink(path)
                    removed += 1
                    log.info("removed stale temporary file %s", path)
            except FileNotFoundError:
                continue
    return removed
