"""Run the queue manager as a service of the master.

The trigger listener (fifo or socket) feeds QueueManager.trigger(); the
manager itself runs until SIGTERM or until the master goes away. Unlike
other trigger services qmgr never exits on max_idle or max_use.

qmgr reports itself used to the master on its first trigger (any, the
master's wakeup included) or when it hands out its first delivery
request, whichever comes first: a qmgr killed after that is restarted at
once, not throttled as a bad start.
"""

from __future__ import annotations

import asyncio
import sys

from mta import log
from mta.config import ConfigError
from mta.maps import MapError
from mta.master.mail_server import drop_privileges_if_asked, new_event_loop, start_service
from mta.master.trigger_server import TriggerServer
from mta.qmgr.manager import QueueManager


def main(argv: list[str] | None = None) -> None:
    ctx, listeners = start_service("qmgr", sys.argv[1:] if argv is None else argv)
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    drop_privileges_if_asked(ctx)
    try:
        qm = QueueManager(ctx.cfg)
    except (ConfigError, MapError) as exc:
        log.fatal("%s", exc)
    server = TriggerServer(ctx, lambda data, _ctx: qm.trigger(data), listeners)
    server.max_idle = 0  # qmgr lives as long as the mail system
    server.max_use = 1 << 62
    server.report_use = False  # a trigger only sets a flag: never "busy" to the master
    qm.on_use = ctx.report_used  # ... but the first delivery request is a use

    async def serve() -> int:
        log.start_background()
        manager = asyncio.create_task(qm.run())
        status = await server.serve()
        qm.stop()
        await manager
        return status

    try:
        status = loop.run_until_complete(serve())
    finally:
        loop.close()
    log.flush()
    sys.exit(status)


if __name__ == "__main__":
    main()
