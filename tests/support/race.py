"""tests.support.race - run one function in many threads released at the same moment."""

from __future__ import annotations

import threading
from collections.abc import Callable


def race(fn: Callable[[], object], n: int) -> tuple[list, list[Exception]]:
    """Run fn() in n threads (named w0..wN-1) released together; return (results, errors)."""
    start = threading.Barrier(n)
    results: list = []
    errors: list[Exception] = []

    def run() -> None:
        start.wait()
        try:
            results.append(fn())
        except Exception as exc:  # noqa: BLE001 - the caller sees every failure
            errors.append(exc)

    threads = [threading.Thread(target=run, name=f"w{i}") for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results, errors
