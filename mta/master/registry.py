"""master.registry - which Python module runs a master.cf command

SYNOPSIS
    from mta.master.registry import resolve_command
    module, why = resolve_command("proxymap")    # ("mta.proxymap", "")
    module, why = resolve_command("smtpd")       # (None, "... not available yet")

DESCRIPTION
    The command field of master.cf names a Postfix program (smtpd,
    cleanup, qmgr, proxymap ...). Each maps to the package mta.NAME,
    with "_" for "-" (trivial-rewrite -> mta.trivial_rewrite); it is
    available when that package has a __main__ module. A command that
    contains "." is a module path run as it is: custom services and the
    test services. MTA_PROGRAMS are mta's own programs (bouncein), named
    and found the same way. resolve_command() returns the module, or None and a
    reason the master logs before it skips the service.

    PRESPAWN_COMMANDS are the long-running services the master starts
    at once rather than on the first client, as it does for every
    service with a wakeup time.

SECURITY
    Looks at file names in the installed mta package and, for a dotted
    command, asks the import system where the module lives; imports
    nothing a service needs.
"""

from __future__ import annotations

import importlib.util
import os

import mta

# Postfix's daemon programs: names the master knows even when mta lacks them yet
POSTFIX_PROGRAMS: frozenset[str] = frozenset(
    {
        "anvil",
        "bounce",
        "cleanup",
        "defer",
        "discard",
        "dnsblog",
        "error",
        "flush",
        "lmtp",
        "local",
        "oqmgr",
        "pickup",
        "pipe",
        "postlogd",
        "postscreen",
        "proxymap",
        "qmgr",
        "qmqpd",
        "retry",
        "scache",
        "showq",
        "smtp",
        "smtpd",
        "spawn",
        "tlsmgr",
        "tlsproxy",
        "trace",
        "trivial-rewrite",
        "verify",
        "virtual",
    }
)

# mta's own programs, which Postfix does not have
MTA_PROGRAMS: frozenset[str] = frozenset({"bouncein"})  # the bounce address handler

# Postfix programs whose mta module has another name
COMMAND_ALIASES: dict[str, str] = {
    "defer": "bounce",  # one program, three services (bounce, defer, trace)
    "trace": "bounce",
    "oqmgr": "qmgr",
    "retry": "error",
    "lmtp": "smtp",  # one client, two protocols
}

PRESPAWN_COMMANDS: frozenset[str] = frozenset({"qmgr", "oqmgr", "pickup", "tlsmgr"})

# Postfix daemons whose work mta does inside the processes that need it
IN_PROCESS_COMMANDS: dict[str, str] = {
    "bounce": "notices and their logs are written by qmgr and the delivery agents",
    "defer": "notices and their logs are written by qmgr and the delivery agents",
    "trace": "notices and their logs are written by qmgr and the delivery agents",
    "trivial-rewrite": "address rewriting runs inside smtpd, cleanup and qmgr",
    "flush": "the fast flush logs are kept by qmgr and read by the flush commands",
}

_PACKAGE_DIR = os.path.dirname(os.path.abspath(mta.__file__))


def module_for_program(command: str) -> str:
    """Return the mta module name for a Postfix program name."""
    return "mta." + COMMAND_ALIASES.get(command, command).replace("-", "_")


def _has_main(module: str) -> bool:
    rel = module.split(".")[1:]
    return os.path.isfile(os.path.join(_PACKAGE_DIR, *rel, "__main__.py"))


def _module_exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def resolve_command(command: str) -> tuple[str | None, str]:
    """Return (module, "") for a runnable command, else (None, reason)."""
    if "." in command:
        if _module_exists(command):
            return command, ""
        return None, f"command {command}: no such Python module"
    if command in POSTFIX_PROGRAMS or command in MTA_PROGRAMS:
        module = module_for_program(command)
        if _has_main(module):
            return module, ""
        if command in IN_PROCESS_COMMANDS:
            return None, f"not needed: {IN_PROCESS_COMMANDS[command]}"
        return None, f"command {command} is not available yet"
    return None, f"command {command} is not a known program"


def is_prespawned(command: str, wakeup: int) -> bool:
    """True when the master starts one process at once instead of on demand."""
    return wakeup > 0 or command in PRESPAWN_COMMANDS
