"""A scripted SMTPD policy server (SMTPD_POLICY_README protocol) for tests.

    with PolicyServer(["DUNNO", "REJECT go away"]) as srv:          # 127.0.0.1, a free port
        ... check_policy_service {srv.service} ...
        srv.requests      # one dict of attributes per request, in order
        srv.connections   # connections accepted

    PolicyServer(script, unix_path="/tmp/x/policy")                   # a UNIX socket instead
    PolicyServer(handler=fn)    # fn(attrs) -> reply, instead of a script

A script entry is an action string (answered "action=...\\n\\n"), or
RAW(bytes, close=False) sent as it is, CLOSE (hang up without answering), SLOW(secs,
entry) (wait, then entry). Requests beyond the script get its last entry.
The server runs its own event loop in a thread, so the code under test
may use asyncio.run as often as it likes.
"""

from __future__ import annotations

import asyncio
import os
import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class RAW:
    data: bytes
    close: bool = False  # hang up after sending data


@dataclass(frozen=True)
class SLOW:
    seconds: float
    then: object


CLOSE = object()


class PolicyServer:
    def __init__(self, script=("DUNNO",), unix_path: str | None = None, handler=None) -> None:
        self.script = list(script)
        self.handler = handler
        self.unix_path = unix_path
        self.requests: list[dict[str, str]] = []
        self.connections = 0
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.port = 0
        self._writers: set = set()

    @property
    def service(self) -> str:
        if self.unix_path:
            return f"unix:{self.unix_path}"
        return f"inet:127.0.0.1:{self.port}"

    def __enter__(self) -> PolicyServer:
        if self.unix_path:
            start = asyncio.start_unix_server(self._serve, path=self.unix_path)
        else:
            start = asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.server = self.loop.run_until_complete(start)
        if not self.unix_path:
            self.port = self.server.sockets[0].getsockname()[1]
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        async def shutdown() -> None:
            self.server.close()
            for w in list(self._writers):
                w.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()
        if self.unix_path and os.path.exists(self.unix_path):
            os.unlink(self.unix_path)

    def _next(self, attrs: dict[str, str]):
        if self.handler is not None:
            return self.handler(attrs)
        index = min(len(self.requests) - 1, len(self.script) - 1)
        return self.script[index]

    async def _serve(self, reader, writer) -> None:
        self.connections += 1
        self._writers.add(writer)
        try:
            while True:
                attrs: dict[str, str] = {}
                while True:
                    line = await reader.readline()
                    if not line:
                        return
                    line = line.rstrip(b"\n")
                    if not line:
                        break
                    name, _, value = line.decode("utf-8", "replace").partition("=")
                    attrs[name] = value
                self.requests.append(attrs)
                entry = self._next(attrs)
                while isinstance(entry, SLOW):
                    await asyncio.sleep(entry.seconds)
                    entry = entry.then
                if entry is CLOSE:
                    return
                data = entry.data if isinstance(entry, RAW) else f"action={entry}\n\n".encode()
                writer.write(data)
                await writer.drain()
                if isinstance(entry, RAW) and entry.close:
                    return
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
