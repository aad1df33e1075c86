"""A service handler(reader, writer, ctx) served by asyncio.start_unix_server in a
background thread, for unit tests of a service without the master."""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace


class HandlerServer:
    def __init__(self, path: str, handler, cfg) -> None:
        self.path = path
        self.handler = handler
        self.ctx = SimpleNamespace(cfg=cfg)
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.ready.wait(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def main():
            self.server = await asyncio.start_unix_server(
                lambda r, w: self.handler(r, w, self.ctx), path=self.path
            )
            self.ready.set()

        self.loop.run_until_complete(main())
        self.loop.run_forever()

    def stop(self) -> None:
        """Like a service process that exits: listener and connections go away."""

        async def shutdown():
            self.server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()
