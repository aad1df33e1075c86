"""cli.common - what every subcommand shares: -c, -v, config loading

SYNOPSIS
    from mta.cli.common import make_parser, load
    parser = make_parser("conf", "show or edit parameters")
    args = parser.parse_args(argv)
    cfg = load(args)

DESCRIPTION
    make_parser() adds -c CONFIG_DIR and -v (repeatable) to an argparse
    parser named "mta COMMAND". load() resolves the configuration
    directory as mta.config.resolve_config_dir does and returns a Config.

SECURITY
    Runs with the invoker's privileges.
"""

from __future__ import annotations

import argparse
import sys

from mta.config import Config, load_config
from mta.config.errors import ConfigError


def make_parser(command: str, description: str, **kw) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"mta {command}", description=description, **kw)
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


def load(args: argparse.Namespace) -> Config:
    return load_config(args.config_dir)


def load_or_report(args: argparse.Namespace, command: str) -> Config | None:
    """The configuration, or None after one "mta COMMAND: fatal: ..." line on stderr."""
    try:
        return load(args)
    except ConfigError as exc:
        sys.stderr.write(f"mta {command}: fatal: {exc}\n")
        return None
