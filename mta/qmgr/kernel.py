"""qmgr.kernel - the scheduler kernel, compiled when available

SYNOPSIS
    from mta.qmgr.kernel import Scheduler, Scheduler_ref, Scheduler_c

DESCRIPTION
    Binds Scheduler to mta/_speedups/scheduler.pyx when it was built and
    to its reference twin scheduler_ref.py otherwise (or when
    MTA_NO_EXTENSIONS=1).

SECURITY
    No input of its own.
"""

from mta._speedups import NO_EXTENSIONS
from mta._speedups.scheduler_ref import Scheduler as Scheduler_ref
from mta._speedups.scheduler_ref import parse_feedback

Scheduler_c = None
if not NO_EXTENSIONS:
    try:
        from mta._speedups.scheduler import Scheduler as Scheduler_c
    except ImportError:
        pass

Scheduler = Scheduler_c or Scheduler_ref

__all__ = ["Scheduler", "Scheduler_c", "Scheduler_ref", "parse_feedback"]
