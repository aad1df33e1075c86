"""python -m mta.verify - the verify service process

SYNOPSIS
    master.cf:  verify  unix  -  -  n  -  1  verify

DESCRIPTION
    Started by the master: serves address verification queries and
    updates on private/verify (address_verify_service_name), many
    clients in one process (mta.verify.server under
    mta.master.multi_server). A cache table that cannot be opened is a
    fatal error, logged with the parameter that names it.

SECURITY
    See mta.verify.server; runs as mail_owner when master.cf marks the
    service unprivileged.
"""

from mta import log
from mta.master.multi_server import run_multi_server
from mta.verify.cache import StoreError
from mta.verify.server import VerifyService

VERIFY_BUSY_AT = 1000  # clients at once before the one process tells the master it is busy
_service: list[VerifyService] = []


async def handle_client(reader, writer, ctx) -> None:
    if not _service:
        try:
            _service.append(VerifyService(ctx.cfg))
        except StoreError as exc:
            log.fatal("%s", exc)
    await _service[0].handle_client(reader, writer, ctx)


def main() -> None:
    run_multi_server("verify", handle_client, busy_at=VERIFY_BUSY_AT)


if __name__ == "__main__":
    main()
