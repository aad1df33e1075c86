"""python -m mta.proxymap - the proxymap service process

SYNOPSIS
    master.cf:  proxymap  unix  -  -  n  -  -  proxymap

DESCRIPTION
    Started by the master: serves lookup requests for the tables in
    proxy_read_maps to the other services over its unix socket, many
    clients per process (mta.proxymap.server.handle_client under
    mta.master.multi_server).

SECURITY
    See mta.proxymap.server; runs as mail_owner when master.cf marks
    the service unprivileged.
"""

from mta.master.multi_server import run_multi_server
from mta.proxymap.server import handle_client


def main() -> None:
    run_multi_server("proxymap", handle_client)


if __name__ == "__main__":
    main()
