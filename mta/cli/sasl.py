"""cli.sasl - manage the users of smtpd's built-in SASL backend

SYNOPSIS
    mta sasl [-c CONFIG_DIR] add USER          # password from stdin or a prompt
    mta sasl [-c CONFIG_DIR] delete USER
    mta sasl [-c CONFIG_DIR] list [--json]
    mta sasl [-c CONFIG_DIR] check USER        # exit 0 when the password matches

DESCRIPTION
    The users of smtpd_sasl_type = mta live in the table smtpd_sasl_path
    names (smtpd/sasl_mta.py: a bare name is lmdb:NAME in
    config_directory). "add" stores a salted scrypt hash of the password
    (--scheme pbkdf2_sha256 for PBKDF2-SHA256), replacing the user's old
    one; "delete" removes the user; "list" prints the user names, one a
    line, or with --json a JSON array of {"user": NAME, "scheme": S};
    "check" tells whether a password is the user's.

    The password is never taken from the command line, where other
    users could read it (ps, /proc): it is read from a terminal with a
    prompt that does not echo (twice for add), or else as the first line
    of standard input. An empty password is refused.

    The table is rewritten as a copy renamed into place (maps/dict_lmdb
    update_lmdb) under a lock on TABLE.lmdb.lock, so two changes at once
    both land, and a running smtpd sees the old or the new user list,
    never a half-written one; a new file gets mode 0600, an old one
    keeps its mode.
    With smtpd_sasl_local_domain set, a USER without "@" is stored as
    USER@smtpd_sasl_local_domain, the name smtpd looks up.

SECURITY
    Writes the users table with the invoker's privileges; the password
    lives only in this process's memory.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import json
import os
import sys

from mta.cli.common import fatal, load_or_report, make_parser
from mta.maps import MapError
from mta.maps.dict_lmdb import LMDB_SUFFIX, fold_key, update_lmdb
from mta.maps.maps import split_spec
from mta.smtpd.sasl_mta import (
    HASH_SCHEMES,
    hash_password,
    login_name,
    users_table_spec,
    valid_hash,
    verify_password,
)

TABLE_MODE = 0o600  # a new users table is readable by its owner only


def _read_password(confirm: bool) -> str | None:
    """The password from the terminal (asked twice when confirm) or stdin's first line."""
    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if confirm and getpass.getpass("Again: ") != first:
            return None
        return first
    return sys.stdin.readline().rstrip("\r\n")


@contextlib.contextmanager
def _locked(path: str):
    """Hold an exclusive lock on PATH.lock, so that two changes never lose one."""
    fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, TABLE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _table_path(spec: str, cfg, command: str) -> str | int:
    kind, name = split_spec(spec, cfg)
    if kind != "lmdb":
        return fatal(command, f"smtpd_sasl_path = {spec}: mta sasl writes lmdb: tables only")
    return name + LMDB_SUFFIX


def _entries(spec: str, cfg) -> list[tuple[str, str]]:
    from mta.maps import open_map

    try:
        table = open_map(spec, cfg)
    except MapError:
        return []
    return sorted(table.items())


def main(argv: list[str], command: str = "sasl") -> int:
    parser = make_parser(command, "Manage the users of smtpd's built-in SASL backend.")
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = sub.add_parser("add", help="add a user or change a password")
    add.add_argument("user", metavar="USER")
    add.add_argument("--scheme", choices=HASH_SCHEMES, default="scrypt", help="hash scheme")
    sub.add_parser("delete", help="remove a user").add_argument("user", metavar="USER")
    lst = sub.add_parser("list", help="list the users")
    lst.add_argument("--json", action="store_true", help="a JSON array")
    sub.add_parser("check", help="check a user's password").add_argument("user", metavar="USER")
    args = parser.parse_args(argv)
    cfg = load_or_report(args, command)
    if cfg is None:
        return 1
    spec = users_table_spec(cfg)
    path = _table_path(spec, cfg, command)
    if isinstance(path, int):
        return path
    if args.action == "list":
        rows = [(u, h.split("$")[0]) for u, h in _entries(spec, cfg)]
        if args.json:
            sys.stdout.write(json.dumps([{"user": u, "scheme": s} for u, s in rows]) + "\n")
        else:
            sys.stdout.writelines(f"{u}\n" for u, _ in rows)
        return 0
    user = login_name(cfg.get("smtpd_sasl_local_domain").strip(), args.user)
    if not user or any(c.isspace() or not c.isprintable() for c in user):
        return fatal(command, f"bad user name: {args.user!r}")
    if args.action == "delete":
        try:
            with _locked(path):
                removed = update_lmdb(path, deletes=[fold_key(user)], spec=spec)
        except MapError as exc:
            return fatal(command, str(exc))
        if not removed:
            return fatal(command, f"{spec}: no such user: {user}")
        return 0
    password = _read_password(confirm=args.action == "add")
    if password is None:
        return fatal(command, "the passwords do not match")
    if not password:
        return fatal(command, "empty password")
    if args.action == "check":
        stored = dict(_entries(spec, cfg)).get(fold_key(user))
        if stored is None or not valid_hash(stored):
            return fatal(command, f"{spec}: no such user: {user}")
        if not verify_password(password, stored):
            return fatal(command, f"{user}: password does not match")
        return 0
    stored = hash_password(password, args.scheme)
    try:
        with _locked(path):
            update_lmdb(
                path,
                puts=[(fold_key(user), stored)],
                spec=spec,
                duplicates="replace",
                mode=None if os.path.exists(path) else TABLE_MODE,
            )
    except MapError as exc:
        return fatal(command, str(exc))
    return 0
