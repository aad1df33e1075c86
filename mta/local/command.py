"""local.command - deliver a message to a shell command ("|command", mailbox_command)

SYNOPSIS
    from mta.local.command import CommandSpec, run_command, command_env
    env = command_env(cfg, user=pw, recipient="u+x@example.com", ...)
    outcome = run_command(CommandSpec(cmd, env, privs, cwd, time_limit, shell), data)

DESCRIPTION
    The command line runs under local_command_shell when set (as
    "SHELL -c COMMAND"), else under /bin/sh -c, with the message on
    standard input, standard output and error captured (the first 2048
    bytes are kept for the reason text), in its own process group, in
    command_execution_directory (when set; failure to change there
    defers) or the queue directory.

    The environment is what Postfix's local gives: PATH reset to
    /usr/bin:/bin, the export_environment variables of the agent, and
    SHELL, HOME, USER, LOGNAME, EXTENSION, DOMAIN, LOCAL, RECIPIENT,
    SENDER, ORIGINAL_RECIPIENT and, when the message came over the
    network, CLIENT_ADDRESS, CLIENT_HELO, CLIENT_HOSTNAME,
    CLIENT_PROTOCOL, SASL_METHOD, SASL_SENDER and SASL_USERNAME. Every
    character of those values that is not in command_expansion_filter
    becomes "_".

    Exit status 0 is delivery. A non-zero status follows <sysexits.h>:
    75 (EX_TEMPFAIL) and 71 (EX_OSERR) defer, the other sysexits codes
    bounce with their enhanced code, any other status bounces with
    5.3.0; when the output starts with an enhanced status code of class
    4 or 5, that code wins. Death by a signal defers, and so does
    exceeding command_time_limit (the process group is killed).

SECURITY
    Runs the command as the given user and group (no supplementary
    groups) when they differ from the agent's own; the command line
    comes from the administrator (aliases, mailbox_command) or from a
    user's own .forward.
"""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass, field

from mta.common.dsn import SYS_EXITS, leading_failure_dsn
from mta.local.privs import Outcome, Privs, bounce, defer, sent

COMMAND_OUTPUT_LIMIT = 2048  # bytes of command output kept for the reason
COMMAND_PATH = "/usr/bin:/bin"  # PATH given to every command


@dataclass
class CommandSpec:
    command: str
    env: dict[str, str] = field(default_factory=dict)
    privs: Privs | None = None
    cwd: str = ""
    time_limit: float = 1000.0
    shell: str = ""


def filter_value(value: str, allowed: str) -> str:
    """Replace every character not in allowed by "_" (command_expansion_filter)."""
    if not allowed:
        return value
    keep = set(allowed)
    return "".join(c if c in keep else "_" for c in value)


def command_env(cfg, values: dict[str, str]) -> dict[str, str]:
    """PATH, export_environment, then values (filtered) under their names."""
    env = {"PATH": COMMAND_PATH}
    for name in cfg.get_list("export_environment"):
        if "=" in name:
            key, _, val = name.partition("=")
            env[key] = val
        elif name in os.environ:
            env[name] = os.environ[name]
    allowed = cfg.get("command_expansion_filter")
    for key, val in values.items():
        if val is not None:
            env[key] = filter_value(val, allowed)
    return env


def _shown(command: str) -> str:
    return command if len(command) <= 200 else command[:197] + "..."


def _output_text(out: bytes) -> str:
    text = out[:COMMAND_OUTPUT_LIMIT].decode("utf-8", "replace")
    return " ".join(text.split())


def run_command(spec: CommandSpec, data: bytes) -> Outcome:
    """Run spec.command with data on its input; see the module docstring."""
    argv = [spec.shell or "/bin/sh", "-c", spec.command]
    kw: dict = {}
    if spec.privs is not None and (
        spec.privs.uid != os.geteuid() or spec.privs.gid != os.getegid()
    ):
        kw.update(user=spec.privs.uid, group=spec.privs.gid, extra_groups=[])
    if spec.cwd and not os.path.isdir(spec.cwd):
        return defer(f"mail system configuration error: cannot change to directory {spec.cwd}")
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=spec.env,
            cwd=spec.cwd or None,
            start_new_session=True,
            close_fds=True,
            **kw,
        )
    except OSError as exc:
        return defer(f'cannot execute command "{_shown(spec.command)}": {exc.strerror or exc}')
    try:
        out, _ = proc.communicate(data, timeout=spec.time_limit)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        proc.communicate()
        return defer(f'Command time limit exceeded: "{_shown(spec.command)}"', "4.3.0")
    status = proc.returncode
    if status == 0:
        return sent(f"delivered to command: {_shown(spec.command)}")
    text = _output_text(out)
    if status < 0:
        reason = f'Command died with signal {-status}: "{_shown(spec.command)}"'
        if text:
            reason += f". Command output: {text}"
        return defer(reason, "4.3.0")
    reason = f'Command died with status {status}: "{_shown(spec.command)}"'
    if text:
        reason += f". Command output: {text}"
    leading = leading_failure_dsn(text)
    dsn = leading[0] if leading else SYS_EXITS.get(status, ("5.3.0", ""))[0]
    return defer(reason, dsn) if dsn.startswith("4") else bounce(reason, dsn)
