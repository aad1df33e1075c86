"""cli.common - what every subcommand shares: -c, -v, config loading, error lines

SYNOPSIS
    from mta.cli.common import make_parser, load, fatal, warning
    parser = make_parser("conf", "show or edit parameters")
    args = parser.parse_args(argv)
    cfg = load(args)
    return fatal("conf", "no such parameter: x")    # "mta conf: fatal: ...", 1

DESCRIPTION
    make_parser() adds -c CONFIG_DIR and -v (repeatable) to an argparse
    parser named "mta COMMAND". load() resolves the configuration
    directory as mta.config.resolve_config_dir does and returns a Config.

    Every command reports a problem in one style, Postfix's: one line
    "mta COMMAND: fatal: TEXT" on stderr and a non-zero exit (fatal()),
    or "mta COMMAND: warning: TEXT" when it carries on (warning()). A
    command-line error found by argparse keeps argparse's usage line and
    then says "mta COMMAND: fatal: TEXT", exit status 2.

SECURITY
    Runs with the invoker's privileges.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from mta.config import Config, load_config
from mta.config.errors import ConfigError


def fatal(command: str, text: str, status: int = 1) -> int:
    """Write "mta COMMAND: fatal: TEXT" on stderr; return status for the caller to exit with."""
    sys.stderr.write(f"mta {command}: fatal: {text}\n")
    return status


def warning(command: str, text: str) -> None:
    """Write "mta COMMAND: warning: TEXT" on stderr."""
    sys.stderr.write(f"mta {command}: warning: {text}\n")


class Parser(argparse.ArgumentParser):
    """argparse, with its errors in the "mta COMMAND: fatal: ..." form."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: fatal: {message}\n")


def make_parser(command: str, description: str, **kw) -> argparse.ArgumentParser:
    parser = Parser(prog=f"mta {command}", description=description, **kw)
    parser.add_argument(
        "-c",
        dest="config_dir",
        metavar="CONFIG_DIR",
        help="configuration directory (default: $MTA_CONFIG_DIR or the embedded instance)",
    )
    parser.add_argument(
        "-v", dest="verbose", action="count", default=0, help="more verbose logging"
    )
    return parser


def accept_options_after(actions: list[argparse.ArgumentParser]) -> None:
    """Let -c and -v come after an ACTION too ("mta suppress list -c DIR"), as
    Postfix's commands take their options anywhere."""
    for parser in actions:
        parser.add_argument(
            "-c",
            dest="config_dir",
            metavar="CONFIG_DIR",
            default=argparse.SUPPRESS,
            help="configuration directory",
        )
        parser.add_argument(
            "-v",
            dest="verbose",
            action="count",
            default=argparse.SUPPRESS,
            help="more verbose logging",
        )


def load(args: argparse.Namespace) -> Config:
    return load_config(args.config_dir)


def load_or_report(args: argparse.Namespace, command: str) -> Config | None:
    """The configuration, or None after one "mta COMMAND: fatal: ..." line on stderr."""
    try:
        return load(args)
    except ConfigError as exc:
        fatal(command, str(exc))
        return None
