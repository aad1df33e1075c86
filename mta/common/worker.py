"""common.worker - one background thread that runs jobs in the order given

SYNOPSIS
    from mta.common.worker import Worker
    w = Worker(os.unlink, "remove")
    w.put("/var/spool/mta/active/4Xh2kq1ZmNz9")
    w.close()                      # runs what is queued, then ends

DESCRIPTION
    An event loop hands slow file-system work (an unlink that waits on
    the journal) to a Worker and goes on at once: put() never blocks.
    Jobs run one at a time in the order they were put; an exception in
    one is logged as a warning and the next runs. close() waits for the
    queued jobs (at most timeout seconds) and ends the thread.

SECURITY
    Runs the caller's own function on the caller's own data; sees no
    input of its own.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

from mta import log

_END = object()


class Worker:
    def __init__(self, run: Callable[[Any], None], name: str) -> None:
        self._run = run
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def put(self, job: Any) -> None:
        self._jobs.put(job)

    def _loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is _END:
                return
            try:
                self._run(job)
            except Exception as exc:  # noqa: BLE001 - one job's failure must not stop the rest
                log.warning("%s: %s: %s", self._thread.name, type(exc).__name__, exc)

    def close(self, timeout: float = 30.0) -> None:
        """Run what is queued, then end the thread."""
        self._jobs.put(_END)
        self._thread.join(timeout)
