"""mta.pipe - the pipe delivery agent: hand a message to an external command

SYNOPSIS
    master.cf:
        mypipe unix - n n - - pipe flags=FRq user=nobody
            argv=/usr/bin/script -f ${sender} -- ${recipient}
    main.cf:
        mypipe_destination_recipient_limit = 1      # one command per recipient
        mypipe_time_limit = 100s                     # default $command_time_limit

    from mta.pipe import deliver, make_deliver
    run_delivery_agent("pipe", deliver)              # args from job.ctx
    deliver_fn = make_deliver(["user=nobody", "argv=/bin/cat"], "mypipe")

DESCRIPTION
    Postfix's pipe(8). The command attributes come from the master.cf
    line of the service (mta/pipe/argv.py); the service name is the
    transport name of <transport>_time_limit and
    <transport>_destination_recipient_limit.

    One request runs the command once for its batch of recipients: an
    argument with ${recipient} (or another per-recipient macro) becomes
    one argument per recipient. When the transport's
    destination_recipient_limit is 1 the command runs once per
    recipient even if a request holds more. The D and O flags need one
    recipient per command: a batch of several defers with "4.3.5 mail
    system configuration error" and a warning.

    The message goes to the command's standard input: first, as the
    flags ask, a "From sender date" line (F), "Return-Path: <sender>"
    (R), "Delivered-To: recipient" (D), "X-Original-To: recipient" (O);
    then the content, each line ended with eol= (default "\\n"), with
    ">" before lines starting "From " (>) and "." before lines starting
    with "." (.), and an empty line at the end (B). With D a message that
    already has a Delivered-To: header for the recipient bounces (5.4.6
    mail forwarding loop). size= bounces larger messages (5.2.3).

    The outcome follows <sysexits.h>: 0 delivers (action "delivered"
    with X, otherwise "relayed"), EX_TEMPFAIL (75) and EX_OSERR (71)
    defer, every other status bounces, with the command's output in the
    reason ("Command died with status 67: "cmd". Command output: ...").
    Output that starts with an enhanced status code (4.x.y or 5.x.y)
    overrides the exit status's code and class. A command killed by a
    signal, one that cannot be started, and one that runs past the time
    limit (killed, "Command time limit exceeded") defer.

    A bad master.cf entry (unknown macro or attribute, missing argv=,
    user= root) defers every recipient with 4.3.5 and logs a warning
    naming master.cf and the service.

SECURITY
    Runs as root when the master starts it so, to switch to user= for
    the command; refuses uid 0 and, when running as root, mail_owner.
    Macro values are envelope data (untrusted); they reach the command
    as separate arguments, never through a shell. The environment holds
    only export_environment (plus a default PATH).

SEE ALSO
    pipe(8), mta/pipe/argv.py, mta/pipe/command.py
"""

from __future__ import annotations

import functools
import grp
import os
import pwd
import time
from collections.abc import Iterator

from mta import log
from mta.common.deliver_agent import DeliveryJob
from mta.common.deliver_request import RequestRecipient
from mta.common.dsn import ACTION_DELIVERED, ACTION_RELAYED, SYS_EXITS, leading_failure_dsn
from mta.pipe.argv import (
    PipeAttrs,
    PipeConfigError,
    expand_argv,
    fold_address,
    parse_pipe_args,
    quote_local,
    split_localpart,
)
from mta.pipe.command import CommandResult, run_command

DEFAULT_PATH = "/bin:/usr/bin"  # PATH when export_environment does not pass one
CHUNK_SIZE = 65536  # bytes written to the command at a time

_REASON_LIMIT = 400  # characters of command output in a reason


class _ConfigProblem(Exception):
    pass


@functools.lru_cache(maxsize=16)
def _parse(args: tuple[str, ...]) -> PipeAttrs:
    return parse_pipe_args(list(args))


def make_deliver(args: list[str], service: str):
    """A deliver(job) for the pipe attributes args of the master.cf service service."""

    async def deliver_fn(job: DeliveryJob) -> None:
        await deliver_with(job, list(args), service)

    return deliver_fn


async def deliver(job: DeliveryJob) -> None:
    """deliver() for run_delivery_agent: the attributes are the service's master.cf args."""
    ctx = job.ctx
    service = getattr(ctx, "service_name", "") or job.req.transport or "pipe"
    await deliver_with(job, list(getattr(ctx, "args", []) or []), service)


def _config_error(job: DeliveryJob, service: str, problem: str) -> None:
    where = os.path.join(getattr(job.cfg, "config_dir", "") or ".", "master.cf")
    log.warning("%s: service %s: %s", where, service, problem)
    job.defer_all(f"mail system configuration error: {problem}", "4.3.5")


def _account(job: DeliveryJob, attrs: PipeAttrs) -> tuple[int | None, int | None]:
    """(uid, gid) for the command; None when not running as root (runs as ourselves)."""
    if os.geteuid() != 0:
        return None, None
    if not attrs.user:
        raise _ConfigProblem("user= is required when running as root")
    try:
        pw = pwd.getpwuid(int(attrs.user)) if attrs.user.isdigit() else pwd.getpwnam(attrs.user)
    except (KeyError, OverflowError):
        raise _ConfigProblem(f"user={attrs.user}: unknown user") from None
    uid, gid = pw.pw_uid, pw.pw_gid
    if attrs.group:
        try:
            gr = (
                grp.getgrgid(int(attrs.group))
                if attrs.group.isdigit()
                else grp.getgrnam(attrs.group)
            )
        except (KeyError, OverflowError):
            raise _ConfigProblem(f"user={attrs.user}:{attrs.group}: unknown group") from None
        gid = gr.gr_gid
    if uid == 0 or gid == 0:
        raise _ConfigProblem(f"user={attrs.user}: refusing to run a command as root")
    owner = job.cfg.get("mail_owner")
    try:
        owner_uid = pwd.getpwnam(owner).pw_uid if owner else -1
    except KeyError:
        owner_uid = -1
    if uid == owner_uid:
        raise _ConfigProblem(f"user={attrs.user}: refusing to run a command as mail_owner")
    return uid, gid


def _environment(cfg) -> dict[str, str]:
    env = {
        name: os.environ[name] for name in cfg.get_list("export_environment") if name in os.environ
    }
    env.setdefault("PATH", DEFAULT_PATH)
    return env


def _header_delivered_to(job: DeliveryJob) -> set[str]:
    """Lowercased Delivered-To: addresses of the message's header section."""
    found: set[str] = set()
    for line in job.content_lines():
        if not line.strip():
            break
        if line[:13].lower() == b"delivered-to:":
            found.add(line[13:].strip().decode("utf-8", "replace").lower())
    return found


def _message_values(job: DeliveryJob, attrs: PipeAttrs) -> dict[str, str]:
    req, msg = job.req, job.message()
    env = msg.attrs
    sender = req.sender
    if sender:
        local, at, domain = sender.rpartition("@")
        if at and "q" in attrs.flags:
            sender = quote_local(local) + "@" + domain
        elif not at and "q" in attrs.flags:
            sender = quote_local(sender)
    else:
        sender = attrs.null_sender
        if sender and "q" in attrs.flags:
            sender = fold_address(sender, "q")
    nexthop = req.nexthop.lower() if "h" in attrs.flags else req.nexthop
    return {
        "sender": sender,
        "nexthop": nexthop,
        "queue_id": req.queue_id,
        "size": str(msg.content_size),
        "client_address": env.get("client_address", ""),
        "client_hostname": env.get("client_name", ""),
        "client_helo": env.get("helo_name", ""),
        "client_port": env.get("client_port", ""),
        "client_protocol": env.get("protocol", ""),
        "sasl_method": env.get("sasl_method", ""),
        "sasl_sender": env.get("sasl_sender", ""),
        "sasl_username": env.get("sasl_username", ""),
    }


def _rcpt_values(rcpt: RequestRecipient, flags: str, delimiters: str) -> dict[str, str]:
    mailbox, user, extension, domain = split_localpart(rcpt.address, delimiters)
    if "u" in flags:
        mailbox, user, extension = mailbox.lower(), user.lower(), extension.lower()
    if "h" in flags:
        domain = domain.lower()
    return {
        "recipient": fold_address(rcpt.address, flags),
        "original_recipient": fold_address(rcpt.orig or rcpt.address, flags),
        "mailbox": mailbox,
        "user": user,
        "extension": extension,
        "domain": domain,
    }


def _stdin_chunks(
    job: DeliveryJob, attrs: PipeAttrs, rcpts: list[RequestRecipient]
) -> Iterator[bytes]:
    """The message as the command reads it."""
    eol, flags = attrs.eol, attrs.flags
    sender = job.req.sender or attrs.null_sender
    head: list[bytes] = []
    if "F" in flags:
        head.append(f"From {sender or 'MAILER-DAEMON'} {time.asctime()}".encode())
    if "R" in flags:
        head.append(f"Return-Path: <{sender}>".encode())
    if "D" in flags:
        head.append(f"Delivered-To: {rcpts[0].address.lower()}".encode())
    if "O" in flags:
        head.append(f"X-Original-To: {rcpts[0].orig or rcpts[0].address}".encode())
    buf = bytearray(b"".join(line + eol for line in head))
    quote_from, stuff = ">" in flags, "." in flags
    for line in job.content_lines():
        if quote_from and line.startswith(b"From "):
            buf += b">"
        if stuff and line.startswith(b"."):
            buf += b"."
        buf += line
        buf += eol
        if len(buf) >= CHUNK_SIZE:
            yield bytes(buf)
            buf.clear()
    if "B" in flags:
        buf += eol
    if buf:
        yield bytes(buf)


def _output_text(output: bytes) -> str:
    text = output.decode("utf-8", "replace")
    text = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    if len(text) > _REASON_LIMIT:
        text = text[:_REASON_LIMIT] + "..."
    return text


def _report(
    job: DeliveryJob,
    attrs: PipeAttrs,
    service: str,
    rcpts: list[RequestRecipient],
    command: str,
    res: CommandResult,
) -> None:
    output = _output_text(res.output)
    if res.exec_error:
        reason = f'cannot execute command "{command}": {res.exec_error}'
        for r in rcpts:
            job.defer(r, reason, "4.3.0", relay=service)
        return
    if res.timed_out:
        reason = f'Command time limit exceeded: "{command}"'
        for r in rcpts:
            job.defer(r, reason, "4.3.0", relay=service)
        return
    if res.signal is not None:
        reason = f'Command died with signal {res.signal}: "{command}"'
        if output:
            reason += f". Command output: {output}"
        for r in rcpts:
            job.defer(r, reason, "4.3.0", relay=service)
        return
    if res.status == 0:
        reason = f"delivered via {service} service" + (f" ({output})" if output else "")
        action = ACTION_DELIVERED if "X" in attrs.flags else ACTION_RELAYED
        for r in rcpts:
            job.sent(r, reason, relay=service, dsn="2.0.0", action=action)
        return
    dsn, text = SYS_EXITS.get(res.status, ("5.3.0", f"unknown error code {res.status}"))
    leading = leading_failure_dsn(output)
    if leading:
        dsn, output = leading[0], leading[1] or text
    reason = f'Command died with status {res.status}: "{command}"'
    reason += f". Command output: {output}" if output else f" ({text})"
    for r in rcpts:
        if dsn.startswith("4"):
            job.defer(r, reason, dsn, relay=service)
        else:
            job.bounce(r, reason, dsn, relay=service)


async def deliver_with(job: DeliveryJob, args: list[str], service: str) -> None:
    """Deliver job's recipients through the command the attributes args describe."""
    cfg = job.cfg
    try:
        attrs = _parse(tuple(args))
        uid, gid = _account(job, attrs)
    except PipeConfigError as exc:
        _config_error(job, service, str(exc))
        return
    except _ConfigProblem as exc:
        _config_error(job, service, str(exc))
        return
    msg = job.message()
    if attrs.size_limit and msg.content_size > attrs.size_limit:
        job.bounce_all("message too large", "5.2.3", relay=service)
        return
    pending = job.pending()
    if cfg.get_int(f"{service}_destination_recipient_limit") == 1:
        batches = [[r] for r in pending]
    else:
        batches = [pending]
    flags = attrs.flags
    if ("D" in flags or "O" in flags) and any(len(b) > 1 for b in batches):
        letter = "D" if "D" in flags else "O"
        log.warning("pipe flag `%s' requires %s_destination_recipient_limit = 1", letter, service)
        job.defer_all("mail system configuration error", "4.3.5", relay=service)
        return
    if "D" in flags:
        seen = _header_delivered_to(job)
        for batch in batches:
            for r in list(batch):
                if r.address.lower() in seen:
                    job.bounce(r, f"mail forwarding loop for {r.address}", "5.4.6", service)
                    batch.remove(r)
    values = _message_values(job, attrs)
    delimiters = cfg.get("recipient_delimiter")
    env = _environment(cfg)
    cwd = attrs.directory or cfg.get("queue_directory")
    time_limit = cfg.get_time(f"{service}_time_limit")
    for batch in batches:
        if not batch:
            continue
        argv = expand_argv(
            attrs.templates, values, [_rcpt_values(r, flags, delimiters) for r in batch]
        )
        res = await run_command(
            argv,
            _stdin_chunks(job, attrs, batch),
            uid=uid,
            gid=gid,
            cwd=cwd,
            env=env,
            time_limit=time_limit,
        )
        _report(job, attrs, service, batch, argv[0], res)
