"""python -m mta.anvil - the anvil service process

SYNOPSIS
    master.cf:  anvil  unix  -  -  n  -  1  anvil

DESCRIPTION
    Started by the master: serves the connection and rate counts of
    mta.anvil.server to every smtpd process, many clients in one process
    under mta.master.multi_server. It must run as one process (master.cf
    process limit 1), or each would count only part of the clients.

SECURITY
    See mta.anvil.server.
"""

from mta.anvil.server import AnvilService
from mta.master.multi_server import run_multi_server

ANVIL_BUSY_AT = 1000  # clients at once before the one process tells the master it is busy
_service: list[AnvilService] = []


async def handle_client(reader, writer, ctx) -> None:
    if not _service:
        _service.append(AnvilService(ctx.cfg))
    await _service[0].handle_client(reader, writer, ctx)


def main() -> None:
    run_multi_server("anvil", handle_client, busy_at=ANVIL_BUSY_AT)


if __name__ == "__main__":
    main()
