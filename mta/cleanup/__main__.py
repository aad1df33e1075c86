"""python -m mta.cleanup - the cleanup service process

SYNOPSIS
    master.cf:  cleanup  unix  n  -  n  -  0  cleanup

DESCRIPTION
    Started by the master: takes messages from other mail system
    processes on private/cleanup (mta.cleanup.server.handle_client
    under mta.master.multi_server), many clients per process.

SECURITY
    See mta.cleanup.server; runs as mail_owner when master.cf marks the
    service unprivileged.
"""

from mta.cleanup.server import handle_client
from mta.master.multi_server import run_multi_server


def main() -> None:
    run_multi_server("cleanup", handle_client)


if __name__ == "__main__":
    main()
