"""mta.spawn - run a non-mail program on each connection to a master.cf service

SYNOPSIS
    master.cf:
        policyd-spf  unix  -  n  n  -  0  spawn
            user=policyd-spf argv=/usr/bin/policyd-spf
    main.cf:
        policyd-spf_time_limit = 3600                # default $command_time_limit
        smtpd_recipient_restrictions = ...,
            check_policy_service unix:private/policyd-spf

    from mta.spawn import parse_spawn_args, command_account, command_time_limit
    attrs = parse_spawn_args(["user=nobody:nogroup", "argv=/bin/cat", "-u"])
    uid, gid = command_account(attrs, cfg.get("mail_owner"))

DESCRIPTION
    Postfix's spawn(8), the mail system's inetd: the master accepts on
    the service's listener and a spawn process starts the command given
    by argv= for each connection, with the connection as its standard
    input and output. The command's standard error goes to the mail log,
    one warning line per line it writes (mta.spawn.command).

    Command attributes, at the end of the master.cf line:

        user=NAME or user=NAME:GROUP (required): the account the command
            runs as; GROUP replaces the user's own group.
        argv=COMMAND ARGS... (required, last): the program and its
            arguments, started directly, never through a shell.

    A word may be written "{ name=value with spaces }". Any other
    attribute is an error. A user= that names root (uid 0 or gid 0) or
    the mail_owner account (its uid, or its gid when no group replaces
    it) is refused, as spawn(8) refuses it. These problems are fatal
    when the process starts: one line in the log, and the master's
    throttling does the rest.

    The command may run ${SERVICE}_time_limit seconds (SERVICE is the
    master.cf service name; the default is $command_time_limit); then
    its process group is killed and a warning is logged. An exit other
    than 0, or death by a signal, is logged as a warning naming the
    command. The environment is the export_environment variables of the
    spawn process, plus a default PATH when that list passes none.

    One process runs one command at a time (master.cf process limit,
    max_use and max_idle work as for every other service); while its
    command runs it does not accept, so the master starts another
    process for the next connection. On SIGTERM (stop, reload) a spawn
    process stops accepting and waits for its command, which ends when
    its client goes away or at its time limit.

    "mta check" warns about attributes the service would refuse
    (attribute_problem, called from mta.config.validate).

SECURITY
    Runs as root when master.cf marks the service unprivileged=n, so that
    it can switch to user=; it never reads or writes the connection
    itself, so client data cannot reach it. With unprivileged=y (-u) and
    root it refuses to start: the command would have to run as mail_owner.
    When the master does not run as root at all, the command runs as the
    master's user (after the same user= checks). The command receives
    no descriptors other than 0, 1 and 2.

SEE ALSO
    spawn(8), SMTPD_POLICY_README; mta/spawn/command.py (running one
    command), mta/spawn/server.py (the service process)
"""

from __future__ import annotations

import grp
import os
import pwd
from dataclasses import dataclass, field

SPAWN_DEFAULT_PATH = "/bin:/usr/bin"  # PATH when export_environment passes none


class SpawnConfigError(ValueError):
    """A master.cf spawn attribute that cannot be used; the text names the problem."""


@dataclass
class SpawnAttrs:
    user: str = ""
    group: str = ""
    argv: list[str] = field(default_factory=list)


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text)


def _unbrace(word: str) -> str:
    if len(word) >= 2 and word[0] == "{" and word[-1] == "}":
        return word[1:-1].strip()
    return word


def parse_spawn_args(args: list[str]) -> SpawnAttrs:
    """The command attributes of a master.cf spawn entry; SpawnConfigError when bad."""
    attrs = SpawnAttrs()
    words = [_unbrace(w) for w in args]
    for i, word in enumerate(words):
        name, eq, value = word.partition("=")
        if not eq:
            raise SpawnConfigError(
                f'bad command attribute "{_printable(word)}" (expected name=value)'
            )
        if name == "argv":
            argv = ([value] if value else []) + words[i + 1 :]
            if not argv or not argv[0]:
                raise SpawnConfigError("argv= names no command")
            attrs.argv = argv
            break
        if name == "user":
            user, _, group = value.partition(":")
            if not user:
                raise SpawnConfigError("user= names no user")
            attrs.user, attrs.group = user, group
        else:
            raise SpawnConfigError(f"unknown attribute name: {_printable(name)}")
    if not attrs.user:
        raise SpawnConfigError("missing user= command-line attribute")
    if not attrs.argv:
        raise SpawnConfigError("missing argv= command-line attribute")
    return attrs


def _lookup_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
    except (KeyError, OverflowError):
        raise SpawnConfigError(f"unknown user name: {name}") from None


def _lookup_group(name: str) -> int:
    try:
        return (grp.getgrgid(int(name)) if name.isdigit() else grp.getgrnam(name)).gr_gid
    except (KeyError, OverflowError):
        raise SpawnConfigError(f"unknown group name: {name}") from None


def command_account(attrs: SpawnAttrs, mail_owner: str) -> tuple[int, int]:
    """(uid, gid) of user=; SpawnConfigError for root, mail_owner or an unknown name."""
    pw = _lookup_user(attrs.user)
    uid = pw.pw_uid
    gid = _lookup_group(attrs.group) if attrs.group else pw.pw_gid
    if uid == 0:
        raise SpawnConfigError("user= command-line attribute specifies root privileges")
    if gid == 0:
        raise SpawnConfigError("user= command-line attribute specifies privileged group id 0")
    try:
        owner = pwd.getpwnam(mail_owner) if mail_owner else None
    except KeyError:
        owner = None
    if owner is not None and uid == owner.pw_uid:
        raise SpawnConfigError(
            f"user= command-line attribute specifies mail system owner {mail_owner}"
        )
    if owner is not None and gid == owner.pw_gid:
        raise SpawnConfigError(
            f"user= command-line attribute specifies mail system owner {mail_owner} group id {gid}"
        )
    return uid, gid


def attribute_problem(args: list[str], mail_owner: str) -> str:
    """What is wrong with a spawn service's master.cf attributes, or "" (mta check)."""
    try:
        command_account(parse_spawn_args(args), mail_owner)
    except SpawnConfigError as exc:
        return str(exc)
    return ""


def command_environment(cfg, environ: dict[str, str] | None = None) -> dict[str, str]:
    """The command's environment: export_environment, plus a default PATH."""
    environ = os.environ if environ is None else environ
    env = {name: environ[name] for name in cfg.get_list("export_environment") if name in environ}
    env.setdefault("PATH", SPAWN_DEFAULT_PATH)
    return env


def command_time_limit(cfg, service: str) -> int:
    """Seconds the command may run: ${service}_time_limit, else $command_time_limit."""
    name = f"{service}_time_limit"
    if cfg.is_set(name):
        return cfg.get_time(name)
    return cfg.get_time("command_time_limit")
