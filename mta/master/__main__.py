"""python -m mta.master - run the master (normally started by "mta start")

SYNOPSIS
    python -m mta.master [-c CONFIG_DIR] [-f] [-r READY_FD] [-v]

DESCRIPTION
    Runs the master supervisor until it is stopped. -f keeps it in the
    foreground and logs to stdout; -r names a descriptor on which the
    master writes "ok" once it holds master.pid and its listeners are
    open ("mta start" waits for it). Exit status 0 after a clean stop, 1
    when the master could not start.

SECURITY
    See mta.master.master.
"""

from __future__ import annotations

import argparse
import sys

from mta.master.master import Master


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mta master", description="the mta master supervisor")
    parser.add_argument("-c", dest="config_dir", metavar="CONFIG_DIR")
    parser.add_argument("-f", dest="foreground", action="store_true")
    parser.add_argument("-r", dest="ready_fd", type=int, metavar="READY_FD")
    parser.add_argument("-v", dest="verbose", action="count", default=0)
    args = parser.parse_args(argv)
    master = Master(args.config_dir, foreground=args.foreground, verbose=args.verbose)
    return master.run(ready_fd=args.ready_fd)


if __name__ == "__main__":
    sys.exit(main())
