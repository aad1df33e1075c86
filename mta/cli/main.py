"""cli.main - the mta command: global options, then one subcommand

SYNOPSIS
    mta [-c CONFIG_DIR] [-v] COMMAND [ARGS...]
    mta COMMAND --help
    mta --version

DESCRIPTION
    Subcommands mirror Postfix's tools and keep their flags: start,
    start-fg, stop, reload, status, check (postfix); conf (postconf);
    map (postmap); log (postlog). A -c given before the subcommand is
    passed on to it, so "mta -c DIR conf -n" and "mta conf -c DIR -n"
    are the same; MTA_CONFIG_DIR applies when neither gives -c, and the
    embedded default instance when nothing does.

    A configuration error prints one line, "mta COMMAND: fatal: FILE,
    line N: ...", and exits 1; so does a file the command cannot open or
    write ("mta COMMAND: fatal: FILE: REASON"), never a traceback.
    --version prints "mta VERSION".

SECURITY
    Runs with the invoker's privileges; the master drops them later.
"""

from __future__ import annotations

import importlib
import sys

import mta
from mta.cli.common import fatal
from mta.config.errors import ConfigError

# name -> (module, one-line summary); each module has main(argv, command) -> int
COMMANDS: dict[str, tuple[str, str]] = {
    "start": ("mta.cli.postfix", "start the mail system in the background"),
    "start-fg": ("mta.cli.postfix", "run the master in the foreground, logging to stdout"),
    "stop": ("mta.cli.postfix", "stop the mail system, letting services finish"),
    "abort": ("mta.cli.postfix", "stop the mail system at once"),
    "reload": ("mta.cli.postfix", "re-read main.cf and master.cf"),
    "status": ("mta.cli.postfix", "tell whether the mail system runs"),
    "check": ("mta.cli.postfix", "create and verify the queue directories"),
    "flush": ("mta.cli.postfix", "try to deliver all deferred mail now"),
    "conf": ("mta.cli.conf", "show or edit parameters (postconf)"),
    "map": ("mta.cli.map", "build and query lookup tables (postmap)"),
    "alias": ("mta.cli.alias", "build and query alias tables (postalias, newaliases)"),
    "lock": ("mta.cli.lock", "lock a mailbox and run a command (postlock)"),
    "log": ("mta.cli.log", "write a line to the mail log (postlog), or read it (--tail, -f)"),
    "cat": ("mta.cli.cat", "show queue files (postcat)"),
    "queue": ("mta.cli.queue", "list the mail queue or flush it (postqueue, mailq)"),
    "qshape": ("mta.cli.qshape", "show the queue by domain and age (qshape)"),
    "super": ("mta.cli.super", "delete, hold, release and requeue messages (postsuper)"),
    "kick": ("mta.cli.kick", "poke a mail system service (postkick)"),
    "rewrite": ("mta.cli.rewrite", "show how addresses are rewritten and resolved"),
    "sasl": ("mta.cli.sasl", "manage the users of smtpd's built-in SASL backend"),
    "dkim": ("mta.cli.dkim", "make DKIM keys and their DNS records; check signatures"),
    "suppress": ("mta.cli.suppress", "show and edit the suppression list"),
}

USAGE = "usage: mta [-c CONFIG_DIR] [-v] COMMAND [ARGS...]"


def _help() -> str:
    width = max(len(n) for n in COMMANDS)
    lines = [USAGE, "", "A Postfix-architecture mail transfer agent.", "", "commands:"]
    lines += [f"  {n:<{width}}  {summary}" for n, (_, summary) in COMMANDS.items()]
    lines += [
        "",
        "options:",
        "  -c CONFIG_DIR  configuration directory (default: $MTA_CONFIG_DIR,",
        "                 else the embedded instance in ~/.local/state/mta)",
        "  -v             more verbose logging",
        "  -h, --help     this help; 'mta COMMAND --help' for a command",
        "  --version      the version of mta",
    ]
    return "\n".join(lines) + "\n"


def run(argv: list[str]) -> int:
    """Dispatch argv (without the program name); return the exit status."""
    passthrough: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-h", "--help"):
            sys.stdout.write(_help())
            return 0
        if arg == "--version":
            sys.stdout.write(f"mta {mta.__version__}\n")
            return 0
        if arg == "-c":
            if i + 1 >= len(argv):
                sys.stderr.write("mta: fatal: option -c needs a directory\n")
                return 2
            passthrough += ["-c", argv[i + 1]]
            i += 2
            continue
        if arg.startswith("-c") and len(arg) > 2:
            passthrough += ["-c", arg[2:]]
            i += 1
            continue
        if arg == "-v":
            passthrough.append("-v")
            i += 1
            continue
        if arg.startswith("-"):
            sys.stderr.write(f"mta: fatal: unknown option {arg}\n{USAGE}\n")
            return 2
        break
    if i >= len(argv):
        sys.stderr.write(_help())
        return 2
    command, rest = argv[i], argv[i + 1 :]
    if command not in COMMANDS:
        sys.stderr.write(f"mta: fatal: unknown command '{command}'; try 'mta --help'\n")
        return 2
    module = importlib.import_module(COMMANDS[command][0])
    try:
        return module.main(passthrough + rest, command)
    except ConfigError as exc:
        return fatal(command, str(exc))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 1
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        return fatal(command, f"{where}{exc.strerror or exc}")


def main() -> None:
    sys.exit(run(sys.argv[1:]))


if __name__ == "__main__":
    main()
