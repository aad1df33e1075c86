"""common.ipc - how long a client waits for an internal service, and which ones are down

SYNOPSIS
    from mta.common import ipc
    timeout = ipc.reply_timeout(cfg)          # min(ipc_timeout, IPC_REPLY_LIMIT)
    if ipc.is_down(path): ...                 # timed out lately: do not wait again
    ipc.mark_down(path, timeout)              # after a request timed out
    ipc.connect_error(exc)                    # "connect: No such file or directory"

DESCRIPTION
    The rules the clients of internal services (proxymap through
    proxy: tables, verify) follow, so that a service that is missing or
    stuck costs the SMTP client a 4xx reply at once instead of a hang:

    - A socket that cannot be connected to (no such file, connection
      refused: the service is not in master.cf, or the mail system is
      stopped) fails the request at once; the caller answers with a
      temporary failure. Trying again within the same request would not
      help a local socket, so there is no retry loop.
    - A reply is awaited at most ipc_timeout, and never longer than
      IPC_REPLY_LIMIT seconds. ipc_timeout (Postfix's default 3600s) is
      meant for long conversations; a lookup or a verify query answers in
      milliseconds, and a socket that accepts but does not answer is a
      service that master cannot start (it throttles it after a bad
      start) or one that is wedged.
    - After a timeout, the socket counts as down for IPC_DOWN_HOLD
      seconds: requests in that time fail at once instead of each
      waiting IPC_REPLY_LIMIT again (proxy: lookups run on smtpd's event
      loop, so every session of the process would wait too).
    - A kept connection that turns out to be broken (the service exited
      after max_idle) is replaced once within the request; a fresh one
      that fails is not.

    The state is per process and per socket path.

SECURITY
    Holds socket paths and times only.
"""

from __future__ import annotations

import time

IPC_REPLY_LIMIT = 5.0  # seconds to wait for an internal service's reply, at most
IPC_DOWN_HOLD = 10.0  # seconds a socket that timed out is not asked again

_down: dict[str, tuple[float, float]] = {}  # path -> (until, the timeout that expired)


def reply_timeout(cfg) -> float:
    """Seconds to wait for a reply: ipc_timeout, at most IPC_REPLY_LIMIT."""
    try:
        return float(min(cfg.get_time("ipc_timeout"), IPC_REPLY_LIMIT))
    except Exception:  # noqa: BLE001 - a bad ipc_timeout is reported by mta check
        return IPC_REPLY_LIMIT


def is_down(path: str) -> bool:
    """Did a request on path time out less than IPC_DOWN_HOLD seconds ago?"""
    entry = _down.get(path)
    if entry is None:
        return False
    if time.monotonic() >= entry[0]:
        _down.pop(path, None)
        return False
    return True


def mark_down(path: str, timeout: float) -> None:
    """A request on path got no reply within timeout seconds."""
    _down[path] = (time.monotonic() + IPC_DOWN_HOLD, timeout)


def mark_up(path: str) -> None:
    _down.pop(path, None)


def down_text(path: str) -> str:
    """Why a request on a socket that is down is not sent."""
    entry = _down.get(path)
    waited = f" within {entry[1]:g}s" if entry else ""
    return f"no reply{waited} lately; not asked again for up to {IPC_DOWN_HOLD:g}s"


def timeout_text(timeout: float) -> str:
    return f"no reply within {timeout:g}s"


def connect_error(exc: OSError) -> str:
    return f"connect: {exc.strerror or exc}"
