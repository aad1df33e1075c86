"""cli.suppress - show and edit the suppression list

SYNOPSIS
    mta suppress add ADDRESS... [--scope DOMAIN] [--class CLASS] [--reason TEXT]
                                [--expires TIME]
    mta suppress rm ADDRESS... [--scope DOMAIN]
    mta suppress show ADDRESS [--sender ADDRESS] [--json]
    mta suppress list [--class CLASS] [--scope DOMAIN] [--expired] [--json]
    mta suppress import [FILE] [--class CLASS] [--scope DOMAIN] [--reason TEXT]
    mta suppress export [FILE]
    mta suppress prune

DESCRIPTION
    Reads and writes the list in the file suppression_map names
    (common/suppress.py). Addresses are compared in lower case. --scope
    makes an entry hold only for mail from that sender domain (and its
    subdomains); without it an entry holds for every sender.

    add lists addresses (source "manual"; --class one of the bounce
    classes, --expires a time such as 30d, never by default). rm
    removes them; the exit status is 1 when one of them was not listed.
    show prints every entry of an address; with --sender, only whether
    mail from that sender is suppressed, and why (exit status 0 when it
    is, 1 when not). list prints every live entry (--expired: only the
    expired ones) as "ADDRESS SCOPE CLASS SOURCE ADDED EXPIRES REASON",
    or with --json one JSON object per line.

    export writes every entry as JSON lines (to FILE or standard
    output); import reads JSON lines as export writes them, or plain
    lines with one address each (with the --class, --scope and --reason
    given, source "import"), in one transaction: a line that cannot be
    read stops the import with "FILE, line N: ..." and nothing stored. A
    progress bar is shown on a terminal. prune removes expired entries.

    Run as root, the list file is given to mail_owner, whose processes
    (qmgr, smtpd) write and read it.

SECURITY
    Runs with the invoker's privileges; imported text is only stored.
"""

from __future__ import annotations

import json
import os
import pwd
import sys
import time

from mta.cli.common import accept_options_after, fatal, load_or_report, make_parser
from mta.common.bounce_class import CLASSES
from mta.common.kv_store import StoreError
from mta.common.suppress import Entry, normal_address, normal_scope, open_suppression
from mta.config.errors import ConfigError
from mta.config.values import parse_time
from mta.util.progress import Progress

COMMAND = "suppress"


def _open(args):
    cfg = load_or_report(args, COMMAND)
    if cfg is None:
        return None
    try:
        sl = open_suppression(cfg)
    except (ConfigError, StoreError) as exc:
        fatal(COMMAND, str(exc))
        return None
    if sl is None:
        fatal(COMMAND, "suppression_map is empty: no suppression list is configured")
        return None
    if os.geteuid() == 0:
        _give_to_mail_owner(cfg, sl.path)
    return sl


def _give_to_mail_owner(cfg, path: str) -> None:
    try:
        entry = pwd.getpwnam(cfg.get("mail_owner"))
    except KeyError:
        return
    for name in (path, path + "-lock", os.path.dirname(path)):
        try:
            st = os.stat(name)
            if st.st_uid == 0 and name != os.path.dirname(path):
                os.chown(name, entry.pw_uid, entry.pw_gid)
        except OSError:
            pass


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)) if t else "never"


def _line(e: Entry) -> str:
    return " ".join(
        [
            e.address,
            e.scope or "global",
            e.klass or "-",
            e.source,
            _when(e.added),
            _when(e.expires),
            e.reason or "-",
        ]
    )


def _print(entries, as_json: bool) -> None:
    for e in entries:
        print(json.dumps(e.as_json()) if as_json else _line(e))


def add(args, sl) -> int:
    expires = 0.0
    if args.expires:
        try:
            expires = time.time() + parse_time(args.expires, "d")
        except ValueError as exc:
            return fatal(COMMAND, f"--expires: {exc}")
    try:
        for address in args.addresses:
            sl.add(address, args.scope or "", args.klass or "", args.reason or "", expires)
    except ValueError as exc:
        return fatal(COMMAND, str(exc))
    return 0


def rm(args, sl) -> int:
    status = 0
    for address in args.addresses:
        try:
            if not sl.remove(address, args.scope or ""):
                sys.stderr.write(f"mta {COMMAND}: {address}: not listed\n")
                status = 1
        except ValueError as exc:
            return fatal(COMMAND, str(exc))
    return status


def show(args, sl) -> int:
    try:
        if args.sender is not None:
            entry = sl.check(args.address, args.sender)
            if entry is None:
                if not args.json:
                    print(f"{normal_address(args.address)}: not suppressed")
                return 1
            _print([entry], args.json)
            return 0
        entries = sl.of_address(args.address)
    except ValueError as exc:
        return fatal(COMMAND, str(exc))
    _print(entries, args.json)
    return 0 if entries else 1


def list_entries(args, sl) -> int:
    now = time.time()
    try:
        scope = normal_scope(args.scope) if args.scope is not None else None
    except ValueError as exc:
        return fatal(COMMAND, str(exc))
    for e in sl.entries():
        if e.expired(now) != args.expired:
            continue
        if args.klass and e.klass != args.klass:
            continue
        if scope is not None and e.scope != scope:
            continue
        _print([e], args.json)
    return 0


def export(args, sl) -> int:
    out = sys.stdout if args.file in (None, "-") else None
    try:
        f = out or open(args.file, "w", encoding="utf-8")
    except OSError as exc:
        return fatal(COMMAND, f"{args.file}: {exc.strerror}")
    try:
        for e in sl.entries():
            f.write(json.dumps(e.as_json()) + "\n")
    finally:
        if out is None:
            f.close()
    return 0


def _read_import(args, lines: list[str], where: str) -> list[Entry]:
    """Entries from JSON lines or plain address lines; ValueError "WHERE, line N: ..."."""
    now = time.time()
    out = []
    bar = Progress(len(lines) if len(lines) > 10000 else 0, f"mta {COMMAND}: reading {where}")
    try:
        for n, text in enumerate(lines, 1):
            bar.update()
            text = text.strip()
            if not text or text.startswith("#"):
                continue
            try:
                if text.startswith("{"):
                    entry = Entry.from_json(json.loads(text))
                    if not entry.added:
                        entry.added = now
                else:
                    entry = Entry(
                        address=normal_address(text),
                        scope=normal_scope(args.scope or ""),
                        klass=args.klass or "",
                        reason=args.reason or "",
                        added=now,
                        source="import",
                    )
            except (ValueError, TypeError) as exc:
                raise ValueError(f"{where}, line {n}: {exc}") from None
            out.append(entry)
    finally:
        bar.close()
    return out


def import_entries(args, sl) -> int:
    where = "standard input" if args.file in (None, "-") else args.file
    try:
        if args.file in (None, "-"):
            lines = sys.stdin.read().splitlines()
        else:
            with open(args.file, encoding="utf-8", errors="surrogateescape") as f:
                lines = f.read().splitlines()
        entries = _read_import(args, lines, where)
    except OSError as exc:
        return fatal(COMMAND, f"{where}: {exc.strerror}")
    except ValueError as exc:
        return fatal(COMMAND, str(exc))
    sl.put_many(entries)
    sys.stderr.write(f"mta {COMMAND}: {len(entries)} entries imported\n")
    return 0


def prune(args, sl) -> int:
    now = time.time()
    gone = [e for e in sl.entries() if e.expired(now)]
    sl.remove_many(gone)
    sys.stderr.write(f"mta {COMMAND}: {len(gone)} expired entries removed\n")
    return 0


ACTIONS = {
    "add": add,
    "rm": rm,
    "show": show,
    "list": list_entries,
    "import": import_entries,
    "export": export,
    "prune": prune,
}


def main(argv: list[str], command: str = COMMAND) -> int:
    parser = make_parser(command, "Show and edit the suppression list (suppression_map).")
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = sub.add_parser("add", help="list addresses")
    p.add_argument("addresses", metavar="ADDRESS", nargs="+")
    p.add_argument("--scope", metavar="DOMAIN", help="only for mail from this sender domain")
    p.add_argument("--class", dest="klass", choices=CLASSES, help="the bounce class")
    p.add_argument("--reason", help="why, for the log and the listing")
    p.add_argument("--expires", metavar="TIME", help="lifetime, such as 30d (default: never)")
    p = sub.add_parser("rm", help="remove addresses")
    p.add_argument("addresses", metavar="ADDRESS", nargs="+")
    p.add_argument("--scope", metavar="DOMAIN", help="the entry of this sender domain")
    p = sub.add_parser("show", help="the entries of one address")
    p.add_argument("address", metavar="ADDRESS")
    p.add_argument("--sender", help="only whether mail from this sender is suppressed")
    p.add_argument("--json", action="store_true", help="one JSON object per entry")
    p = sub.add_parser("list", help="every entry")
    p.add_argument("--class", dest="klass", choices=CLASSES)
    p.add_argument("--scope", metavar="DOMAIN", help="only this scope ('global' for global)")
    p.add_argument("--expired", action="store_true", help="only expired entries")
    p.add_argument("--json", action="store_true", help="one JSON object per entry")
    p = sub.add_parser("import", help="add entries from JSON lines or address lines")
    p.add_argument("file", metavar="FILE", nargs="?", help="default: standard input")
    p.add_argument("--class", dest="klass", choices=CLASSES, help="for address lines")
    p.add_argument("--scope", metavar="DOMAIN", help="for address lines")
    p.add_argument("--reason", help="for address lines")
    p = sub.add_parser("export", help="every entry as JSON lines")
    p.add_argument("file", metavar="FILE", nargs="?", help="default: standard output")
    sub.add_parser("prune", help="remove expired entries")
    accept_options_after(list(sub.choices.values()))
    args = parser.parse_args(argv)
    sl = _open(args)
    if sl is None:
        return 1
    try:
        return ACTIONS[args.action](args, sl)
    except StoreError as exc:
        return fatal(command, str(exc))
    finally:
        sl.close()
