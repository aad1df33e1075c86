"""master.preload - load what a service imports later, before it gives up root

SYNOPSIS
    from mta.master.preload import preload_deferred_imports
    preload_deferred_imports()        # then drop_privileges(...)

DESCRIPTION
    A module of mta that imports another inside a function (to keep a
    process small, or to break a cycle) would read that module's file
    at its first call, long after an unprivileged service dropped root.
    When the installation is readable by root only (a virtualenv under
    /root, say), that import fails as mail_owner. Before the drop,
    preload_deferred_imports() scans the source of every mta module the
    process has loaded for indented import statements (inside a
    function, method or try block), imports what they name, and repeats
    for the modules that brought in, until nothing new is found. A name
    that does not import (an optional package) is passed over: the code
    that wants it handles that as it always did.

    The scan reads the source text, not a parse tree: about a
    millisecond per module, once per process. Imports the standard
    library makes inside itself are not followed, except the ones in
    STDLIB_DEFERRED that every service reaches (asyncio's default
    executor, the IDNA codec of host names); "mta check" and start say
    when the Python installation is not readable by mail_owner at all
    (privs.python_unreadable()).

SECURITY
    Runs as root, before the drop, on the installed mta package only;
    imports modules by the names its own source gives.
"""

from __future__ import annotations

import importlib
import re
import sys

_DEFERRED_IMPORT = re.compile(
    rb"^[ \t]+(?:from[ \t]+([A-Za-z_][\w.]*)[ \t]+import\b|import[ \t]+([A-Za-z_][\w.]*))",
    re.MULTILINE,
)


# modules the standard library loads on first use, that a service reaches
STDLIB_DEFERRED = (
    "concurrent.futures.thread",  # loop.run_in_executor(None, ...): the default executor
    "encodings.idna",  # a host name given to socket functions as text
)
# optional packages too big to load in every process (psycopg: ~200 ms): the code
# that needs one imports it when used, which needs an installation mail_owner can read
NOT_PRELOADED = frozenset({"psycopg"})


# the names after "from PKG import", parenthesized over several lines or not
_IMPORTED_NAMES = re.compile(rb"[ \t]*(?:\(([^)]*)\)|([^\n#]*))")


def deferred_imports(source: bytes) -> set[str]:
    """Module names imported by indented import statements in source; for
    "from PKG import a, b" also PKG.a and PKG.b, which are modules when PKG is a
    package (mta.maps's table types are loaded so)."""
    out: set[str] = set()
    for m in _DEFERRED_IMPORT.finditer(source):
        if m.group(2):
            out.add(m.group(2).decode("ascii"))
            continue
        package = m.group(1).decode("ascii")
        out.add(package)
        if package.split(".", 1)[0] != "mta":
            continue
        names = _IMPORTED_NAMES.match(source, m.end())
        text = (names.group(1) or names.group(2) or b"") if names else b""
        for line in text.split(b"\n"):
            for word in line.split(b"#", 1)[0].split(b","):
                name = word.strip().split(b" as ", 1)[0].strip().decode("ascii", "replace")
                if name.isidentifier():
                    out.add(f"{package}.{name}")
    return out


def _source(module) -> bytes:
    path = getattr(module, "__file__", None) or ""
    if not path.endswith(".py"):
        return b""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


def preload_deferred_imports(package: str = "mta") -> list[str]:
    """Import what loaded modules of package import later; return the names imported."""
    scanned: set[str] = set()
    tried: set[str] = set()
    for name in STDLIB_DEFERRED:
        importlib.import_module(name)
    loaded: list[str] = []
    while True:
        wanted: set[str] = set()
        for name, module in list(sys.modules.items()):
            if name in scanned or not (name == package or name.startswith(package + ".")):
                continue
            scanned.add(name)
            wanted |= deferred_imports(_source(module))
        new = sorted(name for name in wanted - tried - NOT_PRELOADED if name not in sys.modules)
        if not new:
            return loaded
        for name in new:
            tried.add(name)
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001 - optional or broken: its user copes as before
                continue
            loaded.append(name)
