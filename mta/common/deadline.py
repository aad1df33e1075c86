"""common.deadline - await something for at most so many seconds, cheaply

SYNOPSIS
    from mta.common.deadline import bounded
    answer = await bounded(read_attrs(reader), timeout)   # TimeoutError after timeout

DESCRIPTION
    bounded() is asyncio.wait_for() without its cost on the hot paths:
    wait_for() wraps the awaited coroutine in a task of its own (Python
    3.11 and older), one more task, one more pass of the event loop and
    several callbacks for every delivery request. On Python 3.11 and
    newer bounded() runs the coroutine in the caller's task under
    asyncio.timeout(); on 3.10 it is wait_for() itself. Either way a
    timeout raises TimeoutError (asyncio.TimeoutError is the same class
    from 3.11 on; on 3.10 the caller catches asyncio.TimeoutError, which
    it is).

SECURITY
    Sees no input; only bounds how long a peer may keep the caller waiting.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")

if sys.version_info >= (3, 11):

    async def bounded(aw: Awaitable[T], timeout: float | None) -> T:
        """The result of aw, or TimeoutError when it takes more than timeout seconds."""
        async with asyncio.timeout(timeout):
            return await aw

else:  # pragma: no cover - Python 3.10

    async def bounded(aw: Awaitable[T], timeout: float | None) -> T:
        """The result of aw, or asyncio.TimeoutError when it takes more than timeout seconds."""
        return await asyncio.wait_for(aw, timeout)


__all__ = ["bounded"]
