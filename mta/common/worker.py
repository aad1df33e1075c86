"""common.worker - threads that do an event loop's blocking file-system work

SYNOPSIS
    from mta.common.worker import BlockingPool, Worker
    w = Worker(os.unlink, "remove")
    w.put("/var/spool/mta/active/4Xh2kq1ZmNz9")
    w.close()                      # runs what is queued, then ends

    pool = BlockingPool(16, "fsync")
    queue_id = await pool.run(job.commit)
    pool.shutdown()

DESCRIPTION
    An event loop hands slow file-system work (an unlink that waits on
    the journal) to a Worker and goes on at once: put() never blocks.
    Jobs run one at a time in the order they were put; an exception in
    one is logged as a warning and the next runs. close() waits for the
    queued jobs (at most timeout seconds) and ends the thread.

    BlockingPool runs a function on one of its threads and hands the
    result (or the exception) back to the awaiting coroutine: the same as
    loop.run_in_executor() with a ThreadPoolExecutor, for less than half
    the CPU per call (no executor futures, locks or chained callbacks;
    one queue put, one wake-up of the loop). Calls may run in parallel,
    as fsyncs of different files should. shutdown() lets the calls
    already queued finish and ends the threads.

SECURITY
    Runs the caller's own function on the caller's own data; sees no
    input of its own.
"""

from __future__ import annotations

import asyncio
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


def _settle(fut, result, exc) -> None:
    if fut.cancelled():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)


class BlockingPool:
    def __init__(self, threads: int, name: str) -> None:
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._loop, name=f"{name}-{i}", daemon=True)
            for i in range(max(1, threads))
        ]
        for t in self._threads:
            t.start()

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """fn(*args) on a pool thread; its result, or its exception raised here."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._jobs.put((loop, fut, fn, args))
        return await fut

    def _loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is _END:
                return
            loop, fut, fn, args = job
            try:
                result, exc = fn(*args), None
            except BaseException as err:  # noqa: BLE001 - handed to the caller
                result, exc = None, err
            try:
                loop.call_soon_threadsafe(_settle, fut, result, exc)
            except RuntimeError:
                pass  # the loop is closed: nobody waits any more

    def shutdown(self, timeout: float = 30.0) -> None:
        """Finish the queued calls, then end the threads."""
        for _ in self._threads:
            self._jobs.put(_END)
        for t in self._threads:
            t.join(timeout)
