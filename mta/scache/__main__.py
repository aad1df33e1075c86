"""Run the scache service: one process that holds idle SMTP connections for all smtp processes."""

import asyncio
import signal
import sys

from mta.master.mail_server import (
    drop_privileges_if_asked,
    new_event_loop,
    start_service,
    watch_master,
)
from mta.scache import ScacheStore, serve_client


async def serve(ctx, listeners) -> int:
    loop = asyncio.get_running_loop()
    store = ScacheStore()
    done = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, done.set)
    ctx.on_master_gone = done.set
    watch_master(loop, ctx)
    tasks = set()

    async def accept_loop(sock):
        while True:
            try:
                conn, _ = await loop.sock_accept(sock)
            except OSError:
                await asyncio.sleep(0.1)
                continue
            ctx.report_used()  # a later death is no bad start
            task = asyncio.create_task(serve_client(conn, store))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    accepters = [asyncio.create_task(accept_loop(s)) for s in listeners if hasattr(s, "accept")]
    await done.wait()
    for task in accepters:
        task.cancel()
    store.clear()
    return 0


if __name__ == "__main__":
    ctx, listeners = start_service("scache", sys.argv[1:])
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    drop_privileges_if_asked(ctx)
    try:
        status = loop.run_until_complete(serve(ctx, listeners))
    finally:
        loop.close()
    sys.exit(status)
