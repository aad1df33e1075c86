"""mta.local - the local delivery agent: aliases, .forward, mailboxes, files, commands

SYNOPSIS
    master.cf:  local  unix  -  n  n  -  -  local
    from mta.local import deliver          # async deliver(job) for run_delivery_agent

DESCRIPTION
    For each recipient of a request (local_destination_recipient_limit
    is normally 1; lists work too) the local part, folded to lower case,
    is split at the first recipient_delimiter character into user and
    extension (except owner-NAME and NAME-request when the delimiter is
    "-" and owner_request_special is on), and then, as Postfix's local:

    1. A recipient already named in a Delivered-To: header of the
       message bounces with 5.4.6 "mail forwarding loop for ADDRESS".
    2. alias_maps: the local part, then the user without extension.
       The value's destinations (aliases(5)) are: addresses, which are
       forwarded together as one new message through cleanup (with
       Delivered-To: and the owner-NAME sender when there is one);
       "|command"; "/file/name" (a Maildir when it ends in "/");
       ":include:/file" (more destinations, read with the rights of the
       file's owner unless root); "\\name" or the alias's own name, which
       goes straight to that user's mailbox. allow_mail_to_commands and
       allow_mail_to_files say in which contexts (alias, forward,
       include) commands and files are allowed; elsewhere they bounce
       5.7.1. With "alias" in propagate_unmatched_extensions, an
       extension that the alias did not match is added to the local
       part of the forwarded addresses.
    3. A user of the passwd database: the first file of forward_path
       ($user, $home, $shell, $recipient, $extension, $domain, $local,
       $recipient_delimiter expanded) that exists, read with the user's
       rights; its lines are destinations as in 2 (context "forward").
       An empty file means no forwarding.
    4. The mailbox: mailbox_command_maps or mailbox_command (run with
       the user's rights, default_privs for root); else home_mailbox
       under the home directory; else mail_spool_directory/USER. A path
       ending in "/" is a Maildir. mbox deliveries get the "From " line,
       Return-Path:, X-Original-To:, Delivered-To:, ">From " quoting and
       a final empty line under mailbox_delivery_lock, and are limited
       by mailbox_size_limit; see local.mailbox.
    5. Otherwise luser_relay (expanded like forward_path) receives the
       mail, or the recipient bounces 5.1.1 'unknown user: "name"'.

    Every destination's outcome is combined into the recipient's one
    status: a deferral anywhere defers the recipient (all of it is
    tried again later, as Postfix does), else a bounce bounces it, else
    it is sent with the reasons ("delivered to mailbox", "delivered to
    maildir", "delivered to command: CMD", "delivered to file: PATH",
    "forwarded as QUEUEID"); relay is "local". Duplicate destinations
    within one recipient are delivered once.

    The work is blocking file and process I/O, so deliver() runs it in
    the event loop's default executor thread: the loop stays free for
    the master's signals and for the request socket, and the agent is
    started with busy_at=1 so that the master spawns another process
    for concurrent deliveries, as Postfix runs one local process per
    delivery.

SECURITY
    Sees untrusted content and addresses. When run as root for a
    privilege-separated instance (local.privs.privileged) every access
    to a home directory, file or command happens in a child or a
    subprocess with the recipient's uid and gid (or default_privs, or
    the alias table's owner); mbox files in mail_spool_directory are
    written as root and created owned by the user. Otherwise
    everything runs as the invoking user.

SEE ALSO
    local(8), aliases(5), mta/local/mailbox.py, command.py, forward.py
"""

from __future__ import annotations

import asyncio
import os
import pwd
import threading
from dataclasses import dataclass, field

from mta.common.deliver_agent import DeliveryJob
from mta.config.errors import ConfigError
from mta.config.expand import expand
from mta.local.alias import AliasTables
from mta.local.aliases_file import split_alias_value
from mta.local.command import CommandSpec, command_env, filter_value, run_command
from mta.local.file import deliver_file
from mta.local.forward import find_forward_file, forward_message, read_destination_file
from mta.local.lock import LockSettings
from mta.local.mailbox import MailCopy, append_mbox, deliver_maildir, render
from mta.local.privs import (
    OUTCOME_BOUNCE,
    OUTCOME_DEFER,
    Outcome,
    Privs,
    bounce,
    default_privs,
    defer,
    privileged,
    run_as,
    sent,
)
from mta.maps import MapError, MapRetry, Maps

LOCAL_RELAY = "local"  # relay= of every status line
INCLUDE_DEPTH_LIMIT = 20  # nested :include: and alias levels
CTX_ALIAS, CTX_FORWARD, CTX_INCLUDE = "alias", "forward", "include"


@dataclass
class Rcpt:
    address: str  # full recipient address
    orig: str  # as first given to the mail system
    local: str  # local part, folded
    user: str  # local part without extension
    extension: str
    delimiter: str
    domain: str


@dataclass
class Expansion:
    """Outcomes and pending forward addresses of one recipient."""

    outcomes: list[Outcome] = field(default_factory=list)
    forward: dict[str | None, list[str]] = field(default_factory=dict)  # sender -> addresses
    seen: set = field(default_factory=set)


def split_recipient(address: str, delimiters: str, owner_special: bool = True) -> Rcpt:
    """Split address into its parts (see the module docstring)."""
    local, at, domain = address.rpartition("@")
    if not at:
        local, domain = address, ""
    folded = local.lower()
    user, ext, delim = folded, "", ""
    special = (
        owner_special
        and "-" in delimiters
        and (folded.startswith("owner-") or folded.endswith("-request"))
    )
    if delimiters and not special:
        for i, ch in enumerate(folded):
            if ch in delimiters and i > 0:
                user, delim, ext = folded[:i], ch, local[i + 1 :]
                break
    return Rcpt(address, address, folded, user, ext, delim, domain.lower())


def delivered_to_addresses(lines: list[bytes]) -> set[str]:
    """Folded addresses of the Delivered-To: headers of the header section."""
    out = set()
    for line in lines:
        if not line:
            break
        if line[:13].lower() == b"delivered-to:":
            out.add(line[13:].strip().decode("utf-8", "replace").lower())
    return out


class LocalAgent:
    """Per-process state: configuration and tables."""

    def __init__(self, cfg) -> None:
        self.cfg = cfg
        self.aliases = AliasTables(cfg)
        self.delimiters = cfg.get("recipient_delimiter")
        self.owner_special = cfg.get_bool("owner_request_special")
        self.privileged = privileged(cfg)
        self.lock = LockSettings.from_config(cfg, "mailbox_delivery_lock")
        self.size_limit = cfg.get_size("mailbox_size_limit")
        self.strict_owner = cfg.get_bool("strict_mailbox_ownership")
        self.hostname = cfg.get("myhostname")
        self.spool = cfg.get("mail_spool_directory")
        self.home_mailbox = cfg.get("home_mailbox")
        self.cmd_maps = Maps.from_param(cfg, "mailbox_command_maps")
        self.allow_cmd = set(cfg.get_list("allow_mail_to_commands"))
        self.allow_file = set(cfg.get_list("allow_mail_to_files"))
        self.prepend = set(cfg.get_list("prepend_delivered_header"))
        self.propagate = set(cfg.get_list("propagate_unmatched_extensions"))
        self.time_limit = float(cfg.get_time("command_time_limit"))
        self.shell = cfg.get("local_command_shell")
        self.queue_dir = cfg.get("queue_directory")

    # ---- helpers
    def _privs(self, pw: pwd.struct_passwd | None, fallback: Privs | None = None) -> Privs | None:
        if pw is not None and pw.pw_uid != 0 and os.geteuid() == 0:
            # whatever the instance, a user's own things (.forward, their
            # mailbox, their commands) never run as root
            return Privs(pw.pw_uid, pw.pw_gid, pw.pw_name)
        if not self.privileged:
            return None
        if pw is None or pw.pw_uid == 0:
            return fallback or default_privs(self.cfg)
        return Privs(pw.pw_uid, pw.pw_gid, pw.pw_name)

    def _attrs(self, rcpt: Rcpt, pw: pwd.struct_passwd | None) -> dict[str, str]:
        return {
            "user": rcpt.user,
            "home": pw.pw_dir if pw else "",
            "shell": pw.pw_shell if pw else "",
            "recipient": rcpt.address,
            "extension": rcpt.extension,
            "domain": rcpt.domain,
            "local": rcpt.local,
            "recipient_delimiter": rcpt.delimiter or self.delimiters[:1],
        }

    def _expand(self, text: str, attrs: dict[str, str], filter_param: str = "") -> str:
        allowed = self.cfg.get(filter_param) if filter_param else ""

        def lookup(name: str) -> str | None:
            if name in attrs:
                return filter_value(attrs[name], allowed).replace("$", "$$")
            return self.cfg.raw(name)

        return expand(text, lookup)

    # ---- one recipient
    def deliver_one(self, rcpt: Rcpt, copy: MailCopy, loops: set[str], attrs: dict) -> Outcome:
        if rcpt.address.lower() in loops:
            return bounce(f"mail forwarding loop for {rcpt.address}", "5.4.6")
        exp = Expansion()
        try:
            self._recipient(rcpt, copy, exp, attrs, 0, skip_alias=False)
        except MapRetry as exc:
            return defer(f"temporary lookup failure: {exc}", "4.3.0")
        except (MapError, ConfigError) as exc:
            return defer(f"mail system configuration error: {exc}", "4.3.5")
        for sender, addrs in exp.forward.items():
            delivered = rcpt.address if "forward" in self.prepend else ""
            use = copy.sender if sender is None else sender
            exp.outcomes.append(forward_message(self.cfg, use, addrs, copy, delivered, attrs))
        return combine(exp.outcomes)

    def _recipient(
        self, rcpt: Rcpt, copy: MailCopy, exp: Expansion, attrs: dict, depth: int, skip_alias: bool
    ) -> None:
        if depth > INCLUDE_DEPTH_LIMIT:
            exp.outcomes.append(bounce("alias or include nesting too deep", "5.4.6"))
            return
        if not skip_alias:
            match = self.aliases.lookup(rcpt.local)
            unmatched = ""
            if match is None and rcpt.local != rcpt.user:
                match = self.aliases.lookup(rcpt.user)
                unmatched = rcpt.extension
            if match is not None:
                privs = self._privs(None, self.aliases.privs_for(match))
                if not self.privileged:
                    privs = None
                ext = unmatched if CTX_ALIAS in self.propagate else ""
                self._destinations(
                    split_alias_value(match.value),
                    rcpt,
                    copy,
                    exp,
                    attrs,
                    depth,
                    CTX_ALIAS,
                    privs,
                    match.owner,
                    match.name,
                    ext,
                )
                return
        try:
            pw = pwd.getpwnam(rcpt.user)
        except KeyError:
            pw = None
        if pw is None:
            relay = self.cfg.raw("luser_relay") or ""
            if relay.strip():
                target = self._expand(relay.strip(), self._attrs(rcpt, None))
                self._add_forward(exp, None, target)
                return
            exp.outcomes.append(bounce(f'unknown user: "{rcpt.user}"', "5.1.1"))
            return
        if not skip_alias and self._forward_file(rcpt, pw, copy, exp, attrs, depth):
            return
        exp.outcomes.append(self.mailbox(rcpt, pw, copy, attrs))

    def _forward_file(self, rcpt: Rcpt, pw, copy: MailCopy, exp: Expansion, attrs, depth) -> bool:
        raw = self.cfg.raw("forward_path") or ""
        values = self._attrs(rcpt, pw)
        paths = [
            p
            for p in (self._expand(x, values, "forward_expansion_filter") for x in _split_list(raw))
            if p
        ]
        if not paths:
            return False
        privs = self._privs(pw, Privs(0, 0, "root")) if pw.pw_uid else None
        found = run_as(privs, find_forward_file, paths)
        if found is None:
            return False
        if isinstance(found, Outcome):
            exp.outcomes.append(found)
            return True
        path, text = found
        items = [
            i
            for line in text.split("\n")
            for i in split_alias_value(line.strip())
            if line.strip() and not line.lstrip().startswith("#")
        ]
        if not items:
            return False  # an empty .forward: no forwarding
        ext = rcpt.extension if CTX_FORWARD in self.propagate else ""
        self._destinations(
            items,
            rcpt,
            copy,
            exp,
            attrs,
            depth,
            CTX_FORWARD,
            self._privs(pw),
            None,
            rcpt.user,
            ext,
            pw=pw,
        )
        return True

    def _add_forward(self, exp: Expansion, sender: str | None, address: str) -> None:
        key = ("forward", address.lower())
        if key in exp.seen:
            return
        exp.seen.add(key)
        exp.forward.setdefault(sender, []).append(address)

    def _destinations(
        self,
        items: list[str],
        rcpt: Rcpt,
        copy: MailCopy,
        exp: Expansion,
        attrs: dict,
        depth: int,
        context: str,
        privs: Privs | None,
        owner: str | None,
        name: str,
        ext: str,
        pw=None,
    ) -> None:
        for item in items:
            low = item.lower()
            if item.startswith("|"):
                if context not in self.allow_cmd:
                    exp.outcomes.append(bounce("mail to command is restricted", "5.7.1"))
                    continue
                if ("command", item) in exp.seen:
                    continue
                exp.seen.add(("command", item))
                exp.outcomes.append(self.command(item[1:].strip(), rcpt, pw, privs, copy, attrs))
            elif item.startswith("/"):
                if context not in self.allow_file:
                    exp.outcomes.append(bounce("mail to file is restricted", "5.7.1"))
                    continue
                if ("file", item) in exp.seen:
                    continue
                exp.seen.add(("file", item))
                exp.outcomes.append(
                    run_as(
                        privs,
                        deliver_file,
                        item,
                        copy,
                        rcpt.address,
                        rcpt.orig,
                        self.lock,
                        self.size_limit,
                        self.hostname,
                        "file" in self.prepend,
                    )
                )
            elif low.startswith(":include:"):
                self._include(
                    item[9:].strip(), rcpt, copy, exp, attrs, depth, privs, owner, name, ext
                )
            else:
                bare = item[1:] if item.startswith("\\") else item
                local, at, domain = bare.rpartition("@")
                local = local if at else bare
                if item.startswith("\\") or (local.lower() == name and not at):
                    sub = split_recipient(local, "", False)
                    sub.address, sub.orig = rcpt.address, rcpt.orig
                    sub.domain, sub.extension = rcpt.domain, rcpt.extension
                    self._recipient(sub, copy, exp, attrs, depth + 1, skip_alias=True)
                    continue
                if ext and self.delimiters:
                    bare = f"{local}{self.delimiters[0]}{ext}{at}{domain}"
                self._add_forward(exp, owner, bare)

    def _include(self, path, rcpt, copy, exp, attrs, depth, privs, owner, name, ext) -> None:
        if depth >= INCLUDE_DEPTH_LIMIT:
            exp.outcomes.append(bounce("alias or include nesting too deep", "5.4.6"))
            return
        if not path.startswith("/"):
            exp.outcomes.append(bounce(f":include:{path}: path is not absolute", "5.3.5"))
            return
        text, error, _ = run_as(privs, _read_include, path)
        if error is not None:
            exp.outcomes.append(defer(f"cannot open include file {path}: {error}", "4.3.0"))
            return
        if self.privileged:
            try:
                st = os.stat(path)
                if st.st_uid != 0:
                    privs = Privs(st.st_uid, st.st_gid)
            except OSError:
                pass
        items = [
            i
            for line in text.split("\n")
            for i in split_alias_value(line.strip())
            if line.strip() and not line.lstrip().startswith("#")
        ]
        ext = ext if CTX_INCLUDE in self.propagate else ""
        self._destinations(
            items, rcpt, copy, exp, attrs, depth + 1, CTX_INCLUDE, privs, owner, name, ext
        )

    # ---- final destinations
    def command(
        self, cmd: str, rcpt: Rcpt, pw, privs: Privs | None, copy: MailCopy, attrs: dict
    ) -> Outcome:
        values = {
            "SHELL": pw.pw_shell if pw else "",
            "HOME": pw.pw_dir if pw else "",
            "USER": rcpt.user,
            "LOGNAME": rcpt.user,
            "EXTENSION": rcpt.extension,
            "DOMAIN": rcpt.domain,
            "LOCAL": rcpt.local,
            "RECIPIENT": rcpt.address,
            "SENDER": copy.sender,
            "ORIGINAL_RECIPIENT": rcpt.orig,
        }
        for env, attr in (
            ("CLIENT_ADDRESS", "client_address"),
            ("CLIENT_HELO", "helo_name"),
            ("CLIENT_HOSTNAME", "client_name"),
            ("CLIENT_PROTOCOL", "protocol"),
            ("SASL_METHOD", "sasl_method"),
            ("SASL_SENDER", "sasl_sender"),
            ("SASL_USERNAME", "sasl_username"),
        ):
            if attrs.get(attr):
                values[env] = attrs[attr]
        cwd = self.cfg.raw("command_execution_directory") or ""
        cwd = (
            self._expand(cwd, self._attrs(rcpt, pw), "command_expansion_filter")
            if cwd
            else self.queue_dir
        )
        data = render(
            copy,
            recipient=rcpt.address,
            orig_rcpt=rcpt.orig,
            from_line_=True,
            delivered_to="command" in self.prepend,
        )
        spec = CommandSpec(
            cmd, command_env(self.cfg, values), privs, cwd, self.time_limit, self.shell
        )
        return run_command(spec, data)

    def mailbox(self, rcpt: Rcpt, pw, copy: MailCopy, attrs: dict) -> Outcome:
        cmd = self.cmd_maps.lookup(rcpt.user) if self.cmd_maps else None
        if cmd is None:
            cmd = self.cfg.raw("mailbox_command") or ""
        if cmd.strip():
            cmd = self._expand(cmd.strip(), self._attrs(rcpt, pw), "command_expansion_filter")
            return self.command(cmd, rcpt, pw, self._privs(pw), copy, attrs)
        if self.home_mailbox:
            path = os.path.join(pw.pw_dir, self.home_mailbox)
            privs = self._privs(pw, Privs(0, 0, "root")) if pw.pw_uid else None
            return run_as(privs, self._store, path, rcpt, copy)
        path = os.path.join(self.spool, rcpt.user) + ("/" if self.spool.endswith("/") else "")
        if path.endswith("/"):
            privs = self._privs(pw, Privs(0, 0, "root")) if pw.pw_uid else None
            return run_as(privs, self._store, path, rcpt, copy)
        owner = (pw.pw_uid, pw.pw_gid) if self.privileged else None
        return self._store(path, rcpt, copy, owner)

    def _store(self, path: str, rcpt: Rcpt, copy: MailCopy, owner=None) -> Outcome:
        if path.endswith("/"):
            data = render(copy, recipient=rcpt.address, orig_rcpt=rcpt.orig)
            return deliver_maildir(path, data, self.hostname, "maildir")
        data = render(
            copy,
            recipient=rcpt.address,
            orig_rcpt=rcpt.orig,
            from_line_=True,
            quote=True,
            blank=True,
        )
        return append_mbox(
            path,
            data,
            self.lock,
            self.size_limit,
            "mailbox",
            create_owner=owner,
            strict_owner=self.strict_owner,
        )


def _read_include(path: str):
    return read_destination_file(path)


def _split_list(text: str) -> list[str]:
    return [p for p in text.replace(",", " ").split() if p]


def combine(outcomes: list[Outcome]) -> Outcome:
    """One recipient status from its destinations' outcomes."""
    if not outcomes:
        return sent("delivered to nobody")
    for kind in (OUTCOME_DEFER, OUTCOME_BOUNCE):
        for o in outcomes:
            if o.status == kind:
                return o
    reasons: list[str] = []
    for o in outcomes:
        if o.reason not in reasons:
            reasons.append(o.reason)
    return sent("; ".join(reasons), outcomes[0].dsn)


_AGENTS: dict[int, LocalAgent] = {}
_AGENTS_LOCK = threading.Lock()  # deliveries start in worker threads


def agent_for(cfg) -> LocalAgent:
    """The agent for cfg, made once per process even when deliveries start together."""
    agent = _AGENTS.get(id(cfg))
    if agent is not None and agent.cfg is cfg:
        return agent
    with _AGENTS_LOCK:
        agent = _AGENTS.get(id(cfg))
        if agent is None or agent.cfg is not cfg:
            agent = _AGENTS[id(cfg)] = LocalAgent(cfg)
        return agent


def deliver_sync(job: DeliveryJob) -> None:
    """Deliver every pending recipient of job (blocking)."""
    try:
        agent = agent_for(job.cfg)
    except (MapError, ConfigError, ValueError) as exc:
        job.defer_all(f"mail system configuration error: {exc}", "4.3.5", relay=LOCAL_RELAY)
        return
    msg = job.message()
    copy = MailCopy(job.req.sender, list(job.content_lines()), job.req.arrival)
    loops = delivered_to_addresses(copy.lines)
    attrs = dict(job.req.attrs or {})
    for rcpt in job.pending():
        r = split_recipient(rcpt.address, agent.delimiters, agent.owner_special)
        r.orig = rcpt.orig or rcpt.address
        outcome = agent.deliver_one(r, copy, loops, attrs)
        if outcome.status == OUTCOME_DEFER:
            job.defer(rcpt, outcome.reason, outcome.dsn, relay=LOCAL_RELAY)
        elif outcome.status == OUTCOME_BOUNCE:
            job.bounce(rcpt, outcome.reason, outcome.dsn, relay=LOCAL_RELAY)
        else:
            job.sent(rcpt, outcome.reason, relay=LOCAL_RELAY, dsn=outcome.dsn)
    del msg


def verify_sync(job: DeliveryJob) -> None:
    """Verify mode (address probes, sendmail -bv): say where each recipient would go.

    An alias or a known user is deliverable ("aliased to ...", "delivers
    to mailbox", "delivers to luser_relay"); an unknown user bounces as
    it would in a delivery. Nothing is written and no command runs."""
    try:
        agent = agent_for(job.cfg)
    except (MapError, ConfigError, ValueError) as exc:
        job.defer_all(f"mail system configuration error: {exc}", "4.3.5", relay=LOCAL_RELAY)
        return
    for rcpt in job.pending():
        r = split_recipient(rcpt.address, agent.delimiters, agent.owner_special)
        try:
            match = agent.aliases.lookup(r.local)
            if match is None and r.local != r.user:
                match = agent.aliases.lookup(r.user)
        except MapRetry as exc:
            job.defer(rcpt, f"temporary lookup failure: {exc}", "4.3.0", relay=LOCAL_RELAY)
            continue
        except MapError as exc:
            job.defer(rcpt, f"mail system configuration error: {exc}", "4.3.5", LOCAL_RELAY)
            continue
        if match is not None:
            job.sent(rcpt, f"aliased to {match.value.strip()}", relay=LOCAL_RELAY)
            continue
        try:
            pwd.getpwnam(r.user)
        except KeyError:
            if (job.cfg.raw("luser_relay") or "").strip():
                job.sent(rcpt, "delivers to luser_relay", relay=LOCAL_RELAY)
            else:
                job.bounce(rcpt, f'unknown user: "{r.user}"', "5.1.1", relay=LOCAL_RELAY)
            continue
        job.sent(rcpt, "delivers to mailbox", relay=LOCAL_RELAY)


async def verify(job: DeliveryJob) -> None:
    """The agent's verify function (see run_delivery_agent)."""
    await asyncio.get_running_loop().run_in_executor(None, verify_sync, job)


async def deliver(job: DeliveryJob) -> None:
    """The agent's deliver(): the blocking work runs in the default executor."""
    await asyncio.get_running_loop().run_in_executor(None, deliver_sync, job)
