"""cli.conf - show and edit the configuration (postconf)

SYNOPSIS
    mta conf [-c DIR] [-n | -d] [-h] [-x] [-f] [--json] [NAME ...]
    mta conf [-c DIR] -e NAME=VALUE ...
    mta conf [-c DIR] -X NAME ...
    mta conf [-c DIR] -# NAME ...
    mta conf [-c DIR] -M [-h] [--json] [SERVICE[/TYPE] ...]
    mta conf [-c DIR] -P [SERVICE/TYPE/NAME ...]
    mta conf -m

DESCRIPTION
    With no flags, prints every parameter as "name = value" in name order,
    values as written (with $names unexpanded); -x expands them. -n shows
    only what main.cf sets, -d the built-in defaults (derived ones computed
    for this host), NAME ... only those. -h prints values without names.
    -f folds long lines at 80 columns as main.cf continuation lines.
    --json prints one JSON object {"name": "value", ...} instead.

    -e edits main.cf in place: each NAME=VALUE replaces the last setting of
    NAME where it stands (earlier duplicates go) or is appended; comments
    and order stay. -X removes settings, -# comments them out. The edit is
    written to a temporary file, fsynced and renamed, so a crash never
    leaves half a main.cf.

    -M lists master.cf services in master.cf's column form (-M name/type
    or -M name for some; --json for scripts). -P lists the "-o" overrides
    as service/type/name = value. -m lists the lookup table types.

    A NAME that is no parameter gets "warning: NAME: unknown parameter";
    with -n, a main.cf setting that no parameter uses (nor another
    setting as $name) gets "warning: FILE: unused parameter: name=value",
    as postconf does, and one of a parameter that is not implemented yet
    (mta.config.unimplemented) "warning: FILE, line N: NAME is not
    implemented: ...".

SECURITY
    Reads and writes only main.cf in the configuration directory; runs
    with the invoker's privileges.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap

from mta.cli.common import load, make_parser
from mta.config import Config
from mta.config.errors import ConfigError
from mta.config.main_cf import NAME_RE, edit_main_cf
from mta.config.master_cf import ServiceEntry, read_master_cf
from mta.config.params import PARAMS, PER_TRANSPORT
from mta.config.validate import (
    referenced_names,
    spawn_param_names,
    transport_names,
    unimplemented_setting,
)

# Lookup table types known to mta.maps, listed by -m when that package is absent.
TABLE_TYPES = ("cidr", "inline", "lmdb", "pcre", "proxy", "regexp", "static", "texthash")


def _warn(command: str, text: str) -> None:
    sys.stderr.write(f"mta {command}: warning: {text}\n")


def _services(cfg: Config) -> list[ServiceEntry]:
    if not os.path.exists(cfg.master_cf):
        return []
    return read_master_cf(cfg.master_cf, cfg.get_int("default_process_limit"))


def known_names(services: list[ServiceEntry]) -> list[str]:
    """Every parameter name: the table plus TRANSPORT_* names for master.cf transports."""
    names = set(PARAMS)
    for transport in transport_names(services):
        for suffix in PER_TRANSPORT:
            names.add(f"{transport}_{suffix}")
    names |= spawn_param_names(services)
    return sorted(names)


def fold(line: str, width: int = 80) -> str:
    """Fold a name = value line into main.cf continuation lines."""
    if len(line) <= width:
        return line
    return "\n".join(
        textwrap.wrap(
            line, width, subsequent_indent="    ", break_long_words=False, break_on_hyphens=False
        )
    )


def _value(cfg: Config, name: str, args) -> str:
    if args.defaults:
        raw = cfg.default(name) or ""
        return cfg.expand(raw) if args.expand else raw
    if args.expand:
        return cfg.get(name)
    return cfg.raw(name) or ""


def show_params(cfg: Config, args, command: str) -> int:
    services = _services(cfg)
    known = known_names(services)
    known_set = set(known)
    if args.names:
        names = []
        for name in args.names:
            if name in known_set or name in cfg.entries:
                names.append(name)
            else:
                _warn(command, f"{name}: unknown parameter")
    elif args.nondefault:
        names = sorted(cfg.entries)
    else:
        names = known
    if args.nondefault or not args.names:
        used = referenced_names(cfg, services)  # a name used as $name is no typo
        for entry in cfg.unknown_settings(transport_names(services)):
            if entry.name not in used:
                _warn(command, f"{entry.path}: unused parameter: {entry.name}={entry.value}")
    if args.nondefault:
        for name in cfg.entries:
            problem = unimplemented_setting(cfg, name)
            if problem is not None:
                _warn(command, str(problem))
    if args.nondefault and args.names:
        names = [n for n in names if n in cfg.entries]
    values = {name: _value(cfg, name, args) for name in names}
    if args.json:
        json.dump(values, sys.stdout, indent=1, sort_keys=True)
        sys.stdout.write("\n")
        return 0
    out = []
    for name, value in values.items():
        if args.hide_names:
            out.append(value)
        else:
            line = f"{name} = {value}" if value else f"{name} ="
            out.append(fold(line) if args.fold else line)
    if out:
        sys.stdout.write("\n".join(out) + "\n")
    return 0


def parse_assignment(text: str) -> tuple[str, str]:
    """Split "name = value" as -e takes it; ValueError names the problem."""
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep:
        raise ValueError(f'missing "=" after parameter name: "{text}"')
    if not NAME_RE.fullmatch(name):
        raise ValueError(f'bad parameter name: "{name}"')
    return name, value.strip()


def edit(cfg: Config, args, command: str) -> int:
    try:
        if args.edit:
            assign = dict(parse_assignment(a) for a in args.names)
            edit_main_cf(cfg.main_cf, assign=assign)
        elif args.remove:
            edit_main_cf(cfg.main_cf, remove=args.names)
        else:
            edit_main_cf(cfg.main_cf, comment=args.names)
    except ValueError as exc:
        sys.stderr.write(f"mta {command}: fatal: {exc}\n")
        return 1
    except OSError as exc:
        sys.stderr.write(f"mta {command}: fatal: {cfg.main_cf}: {exc.strerror}\n")
        return 1
    return 0


def service_line(s: ServiceEntry) -> str:
    """One master.cf line in postconf -M's column layout, fields as written."""
    name, stype, private, unpriv, chroot, wakeup, maxproc = s.fields
    cmd = " ".join([s.command, *[f"-o {k}={v}" for k, v in s.overrides.items()], *s.args])
    return (
        f"{name:<10} {stype:<5} {private:<7} {unpriv:<7} {chroot:<7} {wakeup:<7} {maxproc:<7} {cmd}"
    )


def _select(services: list[ServiceEntry], patterns: list[str], command: str):
    if not patterns:
        return services
    chosen = []
    for pattern in patterns:
        name, _, type_ = pattern.partition("/")
        hits = [s for s in services if s.name == name and (not type_ or s.type == type_)]
        if not hits:
            _warn(command, f'unmatched request: "{pattern}"')
        chosen.extend(h for h in hits if h not in chosen)
    return chosen


def show_master(cfg: Config, args, command: str) -> int:
    services = _select(_services(cfg), args.names, command)
    if args.json:
        rows = [
            {
                "service": s.name,
                "type": s.type,
                "private": s.private,
                "unpriv": s.unpriv,
                "chroot": s.chroot,
                "wakeup": s.wakeup,
                "wakeup_used_only": s.wakeup_used_only,
                "maxproc": s.maxproc,
                "command": s.command,
                "args": s.args,
                "overrides": s.overrides,
                "line": s.line,
            }
            for s in services
        ]
        json.dump(rows, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    for s in services:
        sys.stdout.write(service_line(s) + "\n")
    return 0


def show_overrides(cfg: Config, args, command: str) -> int:
    wanted = set(args.names)
    for s in _services(cfg):
        for name, value in s.overrides.items():
            key = f"{s.key}/{name}"
            if wanted and key not in wanted:
                continue
            sys.stdout.write(f"{key} = {value}\n" if not args.hide_names else f"{value}\n")
    return 0


def show_table_types() -> int:
    try:
        from mta.maps import table_types

        types = table_types()
    except ImportError:
        types = TABLE_TYPES
    sys.stdout.write("".join(f"{t}\n" for t in sorted(types)))
    return 0


def show_bounce_texts(cfg, args, command: str) -> int:
    """postconf -b: each notice's text as it will be sent ("" as the file: the built-in ones)."""
    from mta.bounce.notice import builtin_intro
    from mta.bounce.template import TemplateError, load_templates

    path = args.names[0] if args.names else cfg.get("bounce_template_file")
    try:
        templates = load_templates(path, cfg) if path else {}
    except TemplateError as exc:
        sys.stderr.write(f"mta {command}: fatal: {exc}\n")
        return 1
    blocks = []
    for kind in ("failure", "delay", "success", "verify"):
        t = templates.get(f"{kind}_template")
        text = t.text(cfg) if t is not None else builtin_intro(cfg, kind)
        blocks.append(f"expanded_{kind}_text = <<EOF\n{text}\nEOF\n")
    sys.stdout.write("\n".join(blocks))
    return 0


def main(argv: list[str], command: str = "conf") -> int:
    parser = make_parser(command, "Show or edit mta parameters, as postconf does.", add_help=False)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("-n", dest="nondefault", action="store_true", help="only main.cf settings")
    mode.add_argument("-d", dest="defaults", action="store_true", help="built-in defaults")
    mode.add_argument("-e", dest="edit", action="store_true", help="edit: NAME=VALUE ...")
    mode.add_argument("-X", dest="remove", action="store_true", help="remove NAME ... from main.cf")
    mode.add_argument(
        "-#", dest="comment", action="store_true", help="comment out NAME ... in main.cf"
    )
    mode.add_argument("-M", dest="master", action="store_true", help="list master.cf services")
    mode.add_argument("-P", dest="overrides", action="store_true", help='list master.cf "-o"s')
    mode.add_argument("-m", dest="types", action="store_true", help="list lookup table types")
    mode.add_argument(
        "-b",
        dest="bounce_texts",
        action="store_true",
        help="show the notice texts, $names expanded (template file: the NAME)",
    )
    parser.add_argument("-h", dest="hide_names", action="store_true", help="values only")
    parser.add_argument("-x", dest="expand", action="store_true", help="expand $names")
    parser.add_argument("-f", dest="fold", action="store_true", help="fold long lines")
    parser.add_argument("--json", action="store_true", help="JSON output for scripts")
    parser.add_argument("--help", action="help", help="show this help and exit")
    parser.add_argument("names", nargs="*", metavar="NAME")
    args = parser.parse_args(argv)
    if args.types:
        return show_table_types()
    try:
        cfg = load(args)
        if args.edit or args.remove or args.comment:
            if not args.names:
                parser.error("-e, -X and -# need at least one NAME")
            return edit(cfg, args, command)
        if args.master:
            return show_master(cfg, args, command)
        if args.overrides:
            return show_overrides(cfg, args, command)
        if args.bounce_texts:
            return show_bounce_texts(cfg, args, command)
        return show_params(cfg, args, command)
    except ConfigError as exc:
        sys.stderr.write(f"mta {command}: fatal: {exc}\n")
        return 1
