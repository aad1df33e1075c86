"""cli.map - build, query and update lookup tables (postmap)

SYNOPSIS
    mta map [-c DIR] [-fNnoprsuUvw] [TYPE:]FILE ...          build FILE.lmdb from FILE
    mta map [-c DIR] [-f] -q KEY|- [TYPE:]NAME ...           query any table type
    mta map [-c DIR] [-f] -d KEY|- [TYPE:]FILE ...           delete keys
    mta map [-c DIR] [-f] [-r|-w] -i [TYPE:]FILE ...         add "key value" lines from stdin
    mta map [-c DIR] -s [TYPE:]NAME ...                      list every key and value
    mta map [-c DIR] -h|-b -q - [TYPE:]NAME ... <MESSAGE      header/body lines as keys
    mta map [-c DIR] -F [TYPE:]FILE ...                      values are files, stored in base64

DESCRIPTION
    With no -q, -d, -i or -s, each FILE is read with postmap's source
    rules (key whitespace value, "#" comments, continuation lines that
    start with whitespace) and FILE.lmdb is written next to it: to
    FILE.lmdb.tmp.PID first, fsynced, then renamed over the old table and
    the directory fsynced, so readers see the old table or the new one.
    Lines that cannot be used are skipped with "mta map: warning: FILE,
    line N: ..."; a duplicate key keeps its first value with a warning,
    or quietly its last value with -r, or quietly its first with -w.
    A fatal error ("mta map: fatal: ...", exit 1) leaves the old table.
    Only lmdb (the default_database_type) can be built, and hash: and
    btree:, Postfix's Berkeley DB types, which build and read the same
    FILE.lmdb, so "mta map hash:/etc/postfix/virtual" serves a main.cf
    that names hash:/etc/postfix/virtual. The new file gets the source
    file's group and other read permission (0644 with -p).

    -q KEY prints the first value found in the tables named and exits 0,
    or exits 1 when no table has the key; -q - reads keys from stdin,
    one a line, prints "key<TAB>value" for each found, and exits 0 when
    at least one was. Any table type works (lmdb, texthash, inline:,
    static:, regexp:, pcre:, cidr:, proxy:). As with postmap, this is one
    lookup with the key as given, without the user@domain search order.

    -d KEY (or -d - for keys on stdin) removes the key from each table
    and exits 0 when at least one removal happened. -i adds "key value"
    lines read from stdin. Both copy the table, change the copy and
    rename it in, so readers never see a half-written table.

    -s prints every "key<TAB>value" of lmdb (hash, btree), texthash and
    inline tables. -f keeps keys as they are instead of folding them to
    lower case. -N stores keys and values with a terminating null byte
    (the default, as Postfix does on Linux), -n without. -o, -u and -U
    are accepted and ignored. A progress bar appears on a terminal when
    the source is large (over 1 MB or 10000 lines).

    -h and -b, only with "-q -", read a message from stdin and look up
    each logical header line (-h) and each body line (-b) as
    header_checks and body_checks would (see cli/map_keys.py); found
    keys print as "key<TAB>value". -m (MIME parsing) is refused: the
    message would be split differently from what it asks for.

    -F: when building (or with -i), each value is a list of file names
    (separated by commas or whitespace); the files' contents, joined by
    a newline, are stored base64-encoded. With -q or -s each value found
    is base64-decoded before it is printed. Certificates for
    tls_server_sni_maps are kept this way.

SECURITY
    Runs with the invoker's privileges; reads the sources and writes the
    tables it was told to, nothing else.

SEE ALSO
    postmap(1), mta/maps (table types), mta/_speedups/maptext.pyx
"""

from __future__ import annotations

import argparse
import base64
import binascii
import os
import re
import sys

from mta.cli.common import load, make_parser
from mta.cli.map_keys import message_keys
from mta.maps import (
    MapError,
    MapRetry,
    open_map,
    set_note_handler,
    set_warning_handler,
    split_spec,
)
from mta.maps.dict_lmdb import (
    LMDB_DEFAULT_MAP_SIZE,
    LMDB_KINDS,
    LMDB_SUFFIX,
    build_lmdb,
    update_lmdb,
)
from mta.maps.text import parse_table_text, read_source
from mta.util.progress import Progress

MAP_PROGRESS_BYTES = 1 << 20  # sources larger than this get a progress bar
MAP_PROGRESS_LINES = 10000  # ... or with more lines than this
SEQUENCE_TYPES = (*LMDB_KINDS, "texthash", "inline")  # types that -s can list
MAP_USAGE = "[-bfFhimnNoprsuUvw] [-c config_dir] [-d key] [-q key] [map_type:]file..."


class Fatal(Exception):
    """One-line fatal error; main() prints it and exits 1."""


def _parser(command: str) -> argparse.ArgumentParser:
    p = make_parser(
        command, "Build, query and update lookup tables, as postmap does.", add_help=False
    )
    p.add_argument("--help", action="help", help="show this help and exit")
    p.add_argument("-b", dest="body", action="store_true", help="-q -: message body lines")
    p.add_argument("-h", dest="headers", action="store_true", help="-q -: message header lines")
    p.add_argument("-m", dest="mime", action="store_true", help="MIME parsing (not implemented)")
    p.add_argument("-F", dest="files", action="store_true", help="values are files, in base64")
    p.add_argument("-f", dest="nofold", action="store_true", help="do not fold keys to lower case")
    p.add_argument("-i", dest="incremental", action="store_true", help="add entries from stdin")
    p.add_argument("-N", dest="nul", action="store_const", const=True, help="store null bytes")
    p.add_argument("-n", dest="nul", action="store_const", const=False, help="no null bytes")
    p.add_argument("-o", action="store_true", help="ignored")
    p.add_argument("-p", dest="plain_mode", action="store_true", help="create files with mode 0644")
    p.add_argument("-r", dest="replace", action="store_true", help="replace duplicates quietly")
    p.add_argument("-w", dest="ignore", action="store_true", help="ignore duplicates quietly")
    p.add_argument("-s", dest="show", action="store_true", help="list all keys and values")
    p.add_argument("-u", action="store_true", help="ignored")
    p.add_argument("-U", action="store_true", help="ignored")
    p.add_argument("-q", dest="query", metavar="KEY", help="look up KEY ('-': keys on stdin)")
    p.add_argument("-d", dest="delete", metavar="KEY", help="delete KEY ('-': keys on stdin)")
    p.add_argument("tables", nargs="*", metavar="[TYPE:]FILE")
    return p


def _out(text: str) -> None:
    sys.stdout.buffer.write(text.encode("utf-8", "surrogateescape"))


def _stdin_keys() -> list[str]:
    data = sys.stdin.buffer.read().decode("utf-8", "surrogateescape")
    return [line.rstrip("\r") for line in data.split("\n") if line.rstrip("\r")]


def _duplicates(args) -> str:
    if args.replace:
        return "replace"
    if args.ignore:
        return "ignore"
    return "warn"


def _map_size(cfg) -> int:
    try:
        return max(cfg.get_size("lmdb_map_size"), 1 << 16)
    except Exception:  # noqa: BLE001 - parameter absent from older tables
        return LMDB_DEFAULT_MAP_SIZE


def _buildable(spec: str, cfg) -> tuple[str, str]:
    kind, name = split_spec(spec, cfg)
    if kind not in LMDB_KINDS:
        raise Fatal(f"unsupported dictionary type: {kind} does not support bulk-mode creation.")
    return kind, name


def _warner(command: str):
    def warn(text: str) -> None:
        sys.stderr.write(f"mta {command}: warning: {text}\n")

    return warn


def _query_keys(args) -> list[str]:
    if args.query != "-":
        return [args.query]
    if args.headers or args.body:
        text = sys.stdin.buffer.read().decode("utf-8", "surrogateescape")
        return list(message_keys(text, headers=args.headers, body=args.body))
    return _stdin_keys()


def _shown(args, table, key: str, value: str) -> str:
    """value as printed: base64-decoded with -F."""
    if not args.files:
        return value
    try:
        raw = base64.b64decode(value.encode("ascii", "surrogateescape"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        sys.stderr.write(
            f"mta map: warning: table {table.spec}: key {key}: malformed BASE64 value: {value}\n"
        )
        raise Fatal(f"table {table.spec}: query error") from None
    return raw.decode("utf-8", "surrogateescape")


def do_query(args, cfg) -> int:
    fold = not args.nofold
    tables = [open_map(spec, cfg, fold=fold) for spec in args.tables]
    found = False
    for key in _query_keys(args):
        for table in tables:
            value = table.lookup(key)
            if value is not None:
                found = True
                value = _shown(args, table, key, value)
                _out(f"{key}\t{value}\n" if args.query == "-" else f"{value}\n")
                break
    return 0 if found else 1


def do_show(args, cfg) -> int:
    fold = not args.nofold
    for spec in args.tables:
        table = open_map(spec, cfg, fold=fold)
        if table.kind not in SEQUENCE_TYPES:
            raise Fatal(f"table {table.spec}: sequence operation is not supported")
        for key, value in table.items():
            _out(f"{key}\t{_shown(args, table, key, value)}\n")
    return 0


def file_values(pairs: list[tuple[bytes, bytes]], where: str, warn) -> list[tuple[bytes, bytes]]:
    """-F: each value names files; store their contents, newline-joined, in base64."""
    out = []
    for key, value in pairs:
        parts = []
        for name in re.split(rb"[\s,]+", value.strip()):
            try:
                with open(name, "rb") as fh:
                    parts.append(fh.read())
            except OSError as exc:
                shown = name.decode("utf-8", "surrogateescape")
                warn(
                    f"{where}: key {key.decode('utf-8', 'replace')}: open {shown}: "
                    f"{exc.strerror or exc}: skipping this entry"
                )
                break
        else:
            out.append((key, base64.b64encode(b"\n".join(parts))))
    return out


def _mode(source: str | None, plain: bool) -> int:
    if plain or source is None:
        return 0o644
    try:
        return 0o600 | (os.stat(source).st_mode & 0o044)
    except OSError:
        return 0o644


def do_delete(args, cfg, warn) -> int:
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
        removed = update_lmdb(path, deletes=raw, spec=f"{kind}:{name}", nul=args.nul)
        found = found or bool(removed)
    return 0 if found else 1


def do_incremental(args, cfg, warn, parse=None) -> int:
    """-i: add "key value" lines from stdin; parse reads them (postalias: alias lines)."""
    data = sys.stdin.buffer.read()
    pairs, warnings = (parse or parse_table_text)(data, not args.nofold)
    for line, msg in warnings:
        warn(f"stdin, line {line}: {msg}")
    if getattr(args, "files", False):
        pairs = file_values(pairs, "stdin", warn)
    for spec in args.tables:
        kind, name = _buildable(spec, cfg)
        path = name + LMDB_SUFFIX
        update_lmdb(
            path,
            puts=pairs,
            spec=f"{kind}:{name}",
            duplicates=_duplicates(args),
            warn=warn,
            map_size=_map_size(cfg),
            nul=args.nul,
            mode=None if os.path.exists(path) else _mode(name, args.plain_mode),
        )
    return 0


def do_build(args, cfg, warn) -> int:
    for spec in args.tables:
        kind, name = _buildable(spec, cfg)
        try:
            data = read_source(name)
        except MapError as exc:
            raise Fatal(str(exc)) from None
        pairs, warnings = parse_table_text(data, not args.nofold)
        for line, msg in warnings:
            warn(f"{name}, line {line}: {msg}")
        if args.files:
            pairs = file_values(pairs, name, warn)
        big = len(data) > MAP_PROGRESS_BYTES or data.count(b"\n") > MAP_PROGRESS_LINES
        bar = Progress(len(pairs) if big else 0, f"mta map: {name}{LMDB_SUFFIX}")
        try:
            build_lmdb(
                name + LMDB_SUFFIX,
                pairs,
                spec=f"{kind}:{name}",
                duplicates=_duplicates(args),
                warn=warn,
                map_size=_map_size(cfg),
                nul=True if args.nul is None else args.nul,
                mode=_mode(name, args.plain_mode),
                progress=bar.update,
            )
        finally:
            bar.close()
    return 0


def _refusal(args) -> str | None:
    """Why the flags cannot be served together, or None."""
    modes = [bool(args.query), bool(args.delete), args.incremental, args.show]
    if sum(modes) > 1:
        return "use only one of -q, -d, -i and -s"
    if (args.headers or args.body or args.mime) and args.query != "-":
        return 'specify -b -h or -m only with "-q -"'
    if args.mime:
        return "-m (MIME parsing of -b and -h keys) is not implemented"
    if args.files and args.delete:
        return "-F applies to building, -i, -q and -s, not to -d"
    return None


def main(argv: list[str], command: str = "map") -> int:
    prog = f"mta {command}"
    usage = f"{prog}: fatal: usage: {prog} {MAP_USAGE}\n"
    try:
        args = _parser(command).parse_args(argv)
    except SystemExit as exc:
        if exc.code in (0, None):
            return 0
        sys.stderr.write(usage)
        return 1
    if not args.tables:
        sys.stderr.write(usage)
        return 1
    why = _refusal(args)
    if why is not None:
        sys.stderr.write(f"{prog}: fatal: {why}\n{usage}")
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
            return do_delete(args, cfg, warn)
        if args.incremental:
            return do_incremental(args, cfg, warn)
        return do_build(args, cfg, warn)
    except (Fatal, MapError) as exc:
        sys.stderr.write(f"{prog}: fatal: {exc}\n")
        return 1
    except MapRetry as exc:
        sys.stderr.write(f"{prog}: fatal: {exc}\n")
        return 1
    finally:
        set_warning_handler(None)
        set_note_handler(None)


def _quiet(text: str) -> None:
    """Notes (which file serves a hash: table) are for the mail log, not the terminal."""
