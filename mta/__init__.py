"""mta - a Postfix-architecture mail transfer agent with Cython hot paths

SYNOPSIS
    import mta
    mta.__version__

DESCRIPTION
    The package root. Importing it checks once whether the compiled
    speedups in mta._speedups are present; when they are not (a pure
    build, or a source tree that was never compiled) it says so in one
    line on stderr and the pure-Python reference kernels are used.

SECURITY
    Sees no untrusted input.
"""

__version__ = "0.1.0"

from mta._speedups import report_missing as _report_missing  # noqa: E402

_report_missing()
