"""mta.virtual - the virtual delivery agent: mailboxes of hosted domains

SYNOPSIS
    master.cf:  virtual  unix  -  n  n  -  -  virtual
    from mta.virtual import deliver        # async deliver(job) for run_delivery_agent

DESCRIPTION
    For each recipient the mailbox path is looked up in
    virtual_mailbox_maps with the full address, then with "@domain"
    (fixed-string tables only; pattern tables see the address); no
    answer bounces 5.1.1 'unknown user: "ADDRESS"'. The path is taken
    below virtual_mailbox_base; one that ends in "/" is a Maildir,
    anything else an mbox file appended under virtual_mailbox_lock and
    limited by virtual_mailbox_limit, as local.mailbox does it (From
    line, Return-Path:, X-Original-To:, Delivered-To:, ">From "
    quoting, truncation on error; a full disk defers 4.3.0).

    virtual_uid_maps and virtual_gid_maps give the ids the delivery runs
    with ("static:5000" or tables keyed like virtual_mailbox_maps); a
    missing answer or a uid below virtual_minimum_uid defers with a
    configuration error, as Postfix does. The ids are used when the
    agent runs as root for a privilege-separated instance; otherwise
    everything is delivered as the invoking user.

    A recipient named in a Delivered-To: header bounces 5.4.6 (mail
    forwarding loop). The blocking work runs in the default executor;
    the service runs with busy_at=1 like local.

SECURITY
    Sees untrusted content and addresses; addresses are only looked up.
    Writes mailboxes in a child process with the mailbox's uid and gid
    (local.privs.run_as) when privileged.

SEE ALSO
    virtual(8), mta/local/mailbox.py
"""

from __future__ import annotations

import asyncio
import os

from mta.common.deliver_agent import DeliveryJob
from mta.config.errors import ConfigError
from mta.local import delivered_to_addresses
from mta.local.lock import LockSettings
from mta.local.mailbox import MailCopy, append_mbox, deliver_maildir, render
from mta.local.privs import (
    OUTCOME_BOUNCE,
    OUTCOME_DEFER,
    Outcome,
    Privs,
    bounce,
    defer,
    privileged,
    run_as,
)
from mta.maps import MapError, MapRetry, Maps

VIRTUAL_RELAY = "virtual"  # relay= of every status line


def lookup_address(maps: Maps, address: str) -> str | None:
    """address, then @domain (fixed tables only)."""
    value = maps.lookup(address.lower())
    if value is None and "@" in address:
        value = maps.lookup("@" + address.rpartition("@")[2].lower(), fixed_only=True)
    return value


def _id(value: str | None, what: str, address: str) -> int:
    if value is None:
        raise ConfigError(f"{what}: no answer for {address}")
    try:
        return int(value.strip())
    except ValueError:
        raise ConfigError(f"{what}: bad {what} value for {address}: {value}") from None


class VirtualAgent:
    def __init__(self, cfg) -> None:
        self.cfg = cfg
        self.mailboxes = Maps.from_param(cfg, "virtual_mailbox_maps")
        self.uids = Maps.from_param(cfg, "virtual_uid_maps")
        self.gids = Maps.from_param(cfg, "virtual_gid_maps")
        self.base = cfg.get("virtual_mailbox_base")
        self.min_uid = cfg.get_int("virtual_minimum_uid")
        self.limit = cfg.get_size("virtual_mailbox_limit")
        self.lock = LockSettings.from_config(cfg, "virtual_mailbox_lock")
        self.hostname = cfg.get("myhostname")
        self.privileged = privileged(cfg)

    def deliver_one(self, address: str, orig: str, copy: MailCopy, loops: set[str]) -> Outcome:
        if address.lower() in loops:
            return bounce(f"mail forwarding loop for {address}", "5.4.6")
        try:
            value = lookup_address(self.mailboxes, address)
            if value is None:
                return bounce(f'unknown user: "{address}"', "5.1.1")
            uid = _id(lookup_address(self.uids, address), "virtual_uid_maps", address)
            gid = _id(lookup_address(self.gids, address), "virtual_gid_maps", address)
        except MapRetry as exc:
            return defer(f"temporary lookup failure: {exc}", "4.3.0")
        except (MapError, ConfigError) as exc:
            return defer(f"mail system configuration error: {exc}", "4.3.5")
        if uid < self.min_uid:
            return defer(
                f"mail system configuration error: bad uid {uid} in virtual_uid_maps", "4.3.5"
            )
        path = os.path.join(self.base, value.strip().lstrip("/")) if self.base else value.strip()
        privs = Privs(uid, gid) if self.privileged else None
        return run_as(privs, self._store, path, address, orig, copy)

    def _store(self, path: str, address: str, orig: str, copy: MailCopy) -> Outcome:
        if path.endswith("/"):
            data = render(copy, recipient=address, orig_rcpt=orig)
            return deliver_maildir(path, data, self.hostname, "maildir")
        data = render(
            copy, recipient=address, orig_rcpt=orig, from_line_=True, quote=True, blank=True
        )
        return append_mbox(path, data, self.lock, self.limit, "mailbox")


_AGENTS: dict[int, VirtualAgent] = {}


def deliver_sync(job: DeliveryJob) -> None:
    agent = _AGENTS.get(id(job.cfg))
    if agent is None or agent.cfg is not job.cfg:
        try:
            agent = _AGENTS[id(job.cfg)] = VirtualAgent(job.cfg)
        except (MapError, ConfigError, ValueError) as exc:
            job.defer_all(f"mail system configuration error: {exc}", "4.3.5", VIRTUAL_RELAY)
            return
    copy = MailCopy(job.req.sender, list(job.content_lines()), job.req.arrival)
    loops = delivered_to_addresses(copy.lines)
    for rcpt in job.pending():
        outcome = agent.deliver_one(rcpt.address, rcpt.orig or rcpt.address, copy, loops)
        if outcome.status == OUTCOME_DEFER:
            job.defer(rcpt, outcome.reason, outcome.dsn, relay=VIRTUAL_RELAY)
        elif outcome.status == OUTCOME_BOUNCE:
            job.bounce(rcpt, outcome.reason, outcome.dsn, relay=VIRTUAL_RELAY)
        else:
            job.sent(rcpt, outcome.reason, relay=VIRTUAL_RELAY, dsn=outcome.dsn)


async def deliver(job: DeliveryJob) -> None:
    """The agent's deliver(): the blocking work runs in the default executor."""
    await asyncio.get_running_loop().run_in_executor(None, deliver_sync, job)
