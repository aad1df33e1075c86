"""mta._speedups - compiled kernels and their reference twins

SYNOPSIS
    from mta._speedups import NO_EXTENSIONS, MISSING

DESCRIPTION
    Every kernel NAME lives here as NAME.pyx (compiled) beside NAME_ref.py
    (plain Python, the specification). Callers bind the public name to the
    compiled version when it imports and to the reference otherwise.

    MTA_NO_EXTENSIONS=1 in the environment forces the reference versions.
    MISSING lists the kernels whose compiled module failed to import;
    report_missing() prints one line about them, once per process.

SECURITY
    Imports nothing from mta except its own *_ref modules.
"""

import importlib
import os
import pkgutil
import sys

NO_EXTENSIONS = os.environ.get("MTA_NO_EXTENSIONS") == "1"

KERNELS = sorted(
    m.name[: -len("_ref")] for m in pkgutil.iter_modules(__path__) if m.name.endswith("_ref")
)


def _find_missing() -> list[str]:
    missing = []
    for name in KERNELS:
        try:
            importlib.import_module(f"{__name__}.{name}")
        except ImportError:
            missing.append(name)
    return missing


MISSING: list[str] = [] if NO_EXTENSIONS else _find_missing()
_reported = False


def report_missing() -> None:
    """Say once, in one line on stderr, that compiled speedups are absent."""
    global _reported
    if _reported or NO_EXTENSIONS or not MISSING:
        return
    _reported = True
    sys.stderr.write(
        "mta: warning: compiled speedups missing ({}); using the slower pure-Python "
        "kernels - reinstall with a C compiler, or set MTA_NO_EXTENSIONS=1 to "
        "silence this\n".format(", ".join(MISSING))
    )
