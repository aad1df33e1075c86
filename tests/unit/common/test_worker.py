"""common.worker: jobs run off the event loop, in order or in parallel, results come back."""

import asyncio
import threading
import time

import pytest

from mta.common.worker import BlockingPool, Worker


def test_worker_runs_jobs_in_order_and_survives_a_failing_one():
    done = []

    def run(job):
        if job == "bad":
            raise OSError("boom")
        done.append(job)

    w = Worker(run, "test")
    for job in ("a", "bad", "b", "c"):
        w.put(job)
    w.close()
    assert done == ["a", "b", "c"]


def test_pool_returns_results_and_raises_exceptions_in_the_caller():
    pool = BlockingPool(2, "test")

    async def main():
        assert await pool.run(lambda a, b: a + b, 2, 3) == 5
        with pytest.raises(FileNotFoundError):
            await pool.run(open, "/nonexistent/file")

    try:
        asyncio.run(main())
    finally:
        pool.shutdown()


def test_pool_runs_calls_off_the_loop_thread_and_in_parallel():
    pool = BlockingPool(4, "test")
    barrier = threading.Barrier(4, timeout=5)

    def meet():
        barrier.wait()  # only returns when four calls run at the same time
        return threading.get_ident()

    async def main():
        loop_thread = threading.get_ident()
        idents = await asyncio.gather(*(pool.run(meet) for _ in range(4)))
        assert loop_thread not in idents and len(set(idents)) == 4

    try:
        asyncio.run(main())
    finally:
        pool.shutdown()


def test_pool_call_whose_caller_was_cancelled_is_dropped_quietly():
    pool = BlockingPool(1, "test")
    ran = threading.Event()

    def slow():
        time.sleep(0.2)
        ran.set()
        return 1

    async def main():
        task = asyncio.ensure_future(pool.run(slow))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.3)  # the result arrives for a cancelled future: no error

    try:
        asyncio.run(main())
    finally:
        pool.shutdown()
    assert ran.is_set()
