"""cli.alias - build and query alias tables (postalias), and newaliases

SYNOPSIS
    mta alias [-c DIR] [-fNnrvw] [TYPE:]FILE ...            build FILE.lmdb from FILE
    mta alias [-c DIR] [-f] -q KEY|- [TYPE:]NAME ...         query
    mta alias [-c DIR] [-f] -d KEY|- [TYPE:]FILE ...         delete
    mta alias [-c DIR] [-f] [-r|-w] -i [TYPE:]FILE ...       add "name: value" lines from stdin
    mta alias [-c DIR] -s [TYPE:]NAME ...                    list every name and value
    newaliases | sendmail -bi | sendmail -I                  mta alias $alias_database

DESCRIPTION
    As postalias(1): each FILE in aliases(5) syntax (see
    mta/local/aliases_file.py) becomes FILE.lmdb, written to a
    temporary name, fsynced and renamed in, exactly as "mta map" builds
    tables, so readers see the old table or the new one. Lines that
    cannot be used are skipped with "mta alias: warning: FILE, line N:
    ..."; duplicates keep the first value with a warning (-r: the last,
    quietly; -w: the first, quietly). -q prints the value of KEY (exit
    0) or exits 1; "-q -" reads keys from stdin and prints
    "key: value" lines. -d removes keys, -i adds aliases read from
    stdin, -s lists "name: value" lines. -f keeps names as written
    instead of folding them to lower case; -N and -n choose whether
    keys and values carry a terminating null byte.

    With no FILE, the tables of alias_database are built (this is what
    newaliases and "sendmail -bi" do); only lmdb tables can be built
    (and hash: and btree:, which name the same FILE.lmdb, so Postfix's
    "alias_database = hash:/etc/aliases" works), others are skipped
    with a warning.

SECURITY
    Runs with the invoker's privileges; writes only the tables named.

SEE ALSO
    postalias(1), aliases(5), newaliases(1), mta/cli/map.py
"""

from __future__ import annotations

import argparse
import os
import sys

from mta.cli import map as map_cli
from mta.cli.common import load, make_parser
from mta.cli.map import (
    Fatal,
    _buildable,
    _map_size,
    _mode,
    _out,
    _quiet,
    _stdin_keys,
    _warner,
)
from mta.local.aliases_file import build_alias_lmdb, parse_aliases
from mta.maps import (
    MapError,
    MapRetry,
    open_map,
    set_note_handler,
    set_warning_handler,
    split_spec,
)
from mta.maps.dict_lmdb import LMDB_KINDS, LMDB_SUFFIX, update_lmdb


def _parser(command: str) -> argparse.ArgumentParser:
    p = make_parser(command, "Build and query alias tables, as postalias does.", add_help=False)
    p.add_argument("--help", action="help", help="show this help and exit")
    p.add_argument("-f", dest="nofold", action="store_true", help="do not fold names")
    p.add_argument("-i", dest="incremental", action="store_true", help="add aliases from stdin")
    p.add_argument("-N", dest="nul", action="store_const", const=True, help="store null bytes")
    p.add_argument("-n", dest="nul", action="store_const", const=False, help="no null bytes")
    p.add_argument("-o", action="store_true", help="ignored")
    p.add_argument("-p", dest="plain_mode", action="store_true", help="create files with mode 0644")
    p.add_argument("-r", dest="replace", action="store_true", help="replace duplicates quietly")
    p.add_argument("-w", dest="ignore", action="store_true", help="ignore duplicates quietly")
    p.add_argument("-s", dest="show", action="store_true", help="list all names and values")
    p.add_argument("-u", action="store_true", help="ignored")
    p.add_argument("-q", dest="query", metavar="KEY", help="look up KEY ('-': keys on stdin)")
    p.add_argument("-d", dest="delete", metavar="KEY", help="delete KEY ('-': keys on stdin)")
    p.add_argument("tables", nargs="*", metavar="[TYPE:]FILE")
    return p


def _duplicates(args) -> str:
    return "replace" if args.replace else "ignore" if args.ignore else "warn"


def do_query(args, cfg) -> int:
    tables = [open_map(spec, cfg, fold=not args.nofold) for spec in args.tables]
    keys = _stdin_keys() if args.query == "-" else [args.query]
    found = False
    for key in keys:
        for table in tables:
            value = table.lookup(key)
            if value is not None:
                found = True
                _out(f"{key}: {value}\n" if args.query == "-" else f"{value}\n")
                break
    return 0 if found else 1


def do_show(args, cfg) -> int:
    for spec in args.tables:
        table = open_map(spec, cfg, fold=not args.nofold)
        for key, value in table.items():
            _out(f"{key}: {value}\n")
    return 0


def do_delete(args, cfg) -> int:
    keys = _stdin_keys() if args.delete == "-" else [args.delete]
    raw = [k.encode("utf-8", "surrogateescape") for k in keys]
    if not args.nofold:
        raw = [k.lower() for k in raw]
    found = False
    for spec in args.tables:
        kind, name = _buildable(spec, cfg)
        path = name + LMDB_SUFFIX
        if not os.path.exists(path):
            raise Fatal(f"open database {path}: No such file or directory")
        found = bool(update_lmdb(path, deletes=raw, spec=f"{kind}:{name}", nul=args.nul)) or found
    return 0 if found else 1


def do_incremental(args, cfg, warn) -> int:
    return map_cli.do_incremental(args, cfg, warn, parse_aliases)


def do_build(args, cfg, warn, specs: list[str]) -> int:
    for spec in specs:
        _, name = _buildable(spec, cfg)
        build_alias_lmdb(
            name,
            fold=not args.nofold,
            duplicates=_duplicates(args),
            warn=warn,
            nul=True if args.nul is None else args.nul,
            map_size=_map_size(cfg),
            mode=_mode(name, args.plain_mode),
        )
    return 0


def alias_database_specs(cfg, warn) -> list[str]:
    """The buildable tables of alias_database (lmdb, hash, btree); others are reported and skipped."""
    out = []
    for spec in cfg.get_list("alias_database"):
        kind, name = split_spec(spec, cfg)
        if kind not in LMDB_KINDS:
            warn(f"{kind}:{name}: cannot build tables of type {kind}; skipped")
            continue
        out.append(f"{kind}:{name}")
    return out


def main(argv: list[str], command: str = "alias") -> int:
    try:
        args = _parser(command).parse_args(argv)
    except SystemExit as exc:
        return 0 if exc.code == 0 else 64
    prog = f"mta {command}"
    modes = [bool(args.query), bool(args.delete), args.incremental, args.show]
    if sum(modes) > 1:
        sys.stderr.write(f"{prog}: fatal: use only one of -q, -d, -i and -s\n")
        return 1
    if any(modes) and not args.tables:
        sys.stderr.write(f"{prog}: fatal: usage: {prog} [-Nfinrsvw] [-q key] [-d key] file...\n")
        return 1
    cfg = load(args)
    warn = _warner(command)
    set_warning_handler(warn)
    set_note_handler(_quiet)
    try:
        if args.query:
            return do_query(args, cfg)
        if args.show:
            return do_show(args, cfg)
        if args.delete:
            return do_delete(args, cfg)
        if args.incremental:
            return do_incremental(args, cfg, warn)
        specs = args.tables or alias_database_specs(cfg, warn)
        return do_build(args, cfg, warn, specs)
    except (Fatal, MapError, MapRetry) as exc:
        sys.stderr.write(f"{prog}: fatal: {exc}\n")
        return 1
    finally:
        set_warning_handler(None)
        set_note_handler(None)


def newaliases(config_dir: str | None = None) -> int:
    """newaliases / sendmail -bi: build every table of alias_database."""
    argv = ["-c", config_dir] if config_dir else []
    return main(argv, "newaliases")
