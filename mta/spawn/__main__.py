"""python -m mta.spawn - the spawn service process (master.cf command "spawn")

SYNOPSIS
    master.cf:  policyd-spf  unix  -  n  n  -  0  spawn  user=nobody argv=/usr/bin/policyd-spf

DESCRIPTION
    Started by the master; see mta.spawn and mta.spawn.server.

SECURITY
    See mta.spawn.
"""

from mta.spawn.server import run_spawn

if __name__ == "__main__":
    run_spawn()
