"""python -m mta.tlsmgr - the tlsmgr service process

SYNOPSIS
    master.cf:  tlsmgr  unix  -  -  n  1000?  1  tlsmgr

DESCRIPTION
    Started by the master at once (it has a wakeup time): serves the
    session-ticket key of mta.tlsmgr.server to every smtpd process,
    many clients in one process under mta.master.multi_server. It must
    run as one process (master.cf process limit 1), or smtpd processes
    would get different keys. It does not exit when idle: a new
    process would draw a new key and void the tickets clients hold.

SECURITY
    See mta.tlsmgr.server.
"""

from mta.master.multi_server import run_multi_server
from mta.tlsmgr.server import TlsmgrService

TLSMGR_BUSY_AT = 1000  # clients at once before the one process tells the master it is busy
_service: list[TlsmgrService] = []


async def handle_client(reader, writer, ctx) -> None:
    if not _service:
        _service.append(TlsmgrService(ctx.cfg))
    await _service[0].handle_client(reader, writer, ctx)


def main() -> None:
    run_multi_server("tlsmgr", handle_client, busy_at=TLSMGR_BUSY_AT, exit_when_idle=False)


if __name__ == "__main__":
    main()
