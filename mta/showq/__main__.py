"""python -m mta.showq - the showq service process

SYNOPSIS
    master.cf:  showq  unix  n  -  n  -  -  showq

DESCRIPTION
    Started by the master on the first client of public/showq: serves
    one listing at a time (mta.showq.handle_client), so a long listing
    never delays another client; the master starts more processes, up
    to the service's maxproc, when several users ask at once.

SECURITY
    See mta.showq; runs as mail_owner when master.cf marks the service
    unprivileged.
"""

from mta.master.multi_server import run_multi_server
from mta.showq import handle_client


def main() -> None:
    run_multi_server("showq", handle_client, max_clients=1)


if __name__ == "__main__":
    main()
