"""milter.local - non_smtpd_milters: the milter chain for mail that did not come by SMTP

SYNOPSIS
    from mta.milter.local import LocalMilters
    milters = LocalMilters.from_config(cfg)          # None when non_smtpd_milters is empty
    job = milters.wrap(cleanup.open(sender, attrs, local_submit=True), sender)
    job.copy_message(msg, path)                      # pickup's maildrop file
    outcome = milters.run(job, sender, recipients)   # blocking: one event loop per message
    outcome.action, outcome.reply, outcome.hold

DESCRIPTION
    Mail from sendmail (maildrop/, picked up by mta.pickup) and from
    QMQP (mta.qmqpd) gets the non_smtpd_milters, as Postfix gives it: a fake connect from
    localhost [127.0.0.1] (port 0), HELO localhost, MAIL FROM, each
    RCPT TO, DATA, then the message content and its end. A refusal at
    any stage refuses the message; discard throws it away; quarantine
    (or a milter that fails with default_action quarantine) puts it in
    hold/. Log lines are those of smtpd's milters with "from local":

        QUEUEID: milter-reject: END-OF-MESSAGE from local: 5.7.1
        Command rejected; from=<s> to=<r>

SECURITY
    Sees content any local user may have written; milter replies are
    parsed with bounds (milter.client). Runs inside pickup.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from mta import log
from mta.maps import Maps
from mta.milter.chain import ACTION_DISCARD, CONTINUE, Decision, MilterChain
from mta.milter.header_checks import MilterHeaderChecks
from mta.milter.job import MilterJob
from mta.milter.settings import MilterSettings, parse_milters

LOCAL_HOST = "localhost"
LOCAL_ADDR = "127.0.0.1"


@dataclass
class LocalOutcome:
    action: str  # "continue", "reject", "tempfail", "discard", "shutdown"
    reply: str = ""
    hold: str | None = None


class LocalMilters:
    """See the module docstring."""

    def __init__(self, cfg) -> None:
        self.settings = MilterSettings.from_config(cfg)
        self.specs = parse_milters(cfg.get("non_smtpd_milters"), self.settings)
        self.size_limit = cfg.get_size("message_size_limit")
        self.myhostname = cfg.get("myhostname")
        self.header_checks = Maps.from_param(cfg, "milter_header_checks")

    @classmethod
    def from_config(cls, cfg) -> LocalMilters | None:
        if not cfg.get("non_smtpd_milters").strip():
            return None
        return cls(cfg)

    def wrap(self, job, sender: str) -> MilterJob:
        return MilterJob(job, sender, self.size_limit)

    def run(self, job: MilterJob, sender: str) -> LocalOutcome:
        """The whole chain for one message, blocking (in a thread of its own when the
        caller runs an event loop, as pickup's service loop does)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self._run(job, sender))
        with ThreadPoolExecutor(1, "milter") as pool:
            return pool.submit(asyncio.run, self._run(job, sender)).result()

    async def run_async(self, job: MilterJob, sender: str) -> LocalOutcome:
        """The whole chain for one message, from a caller's event loop (qmqpd)."""
        return await self._run(job, sender)

    async def _run(self, job: MilterJob, sender: str) -> LocalOutcome:
        chain = MilterChain(self.specs, self.settings, self.size_limit)
        s = self.settings
        macros = {
            "j": self.myhostname,
            "daemon_name": s.daemon_name,
            "v": s.version,
            "_": f"{LOCAL_HOST} [{LOCAL_ADDR}]",
            "client_addr": LOCAL_ADDR,
            "client_name": LOCAL_HOST,
            "client_port": "0",
            "client_ptr": LOCAL_HOST,
            "i": job.queue_id,
            "mail_addr": sender,  # {mail_host} and the like: smtpd_milters only, as Postfix
        }
        first = job.recipients[0][0] if job.recipients else ""
        hold = None
        try:
            decision = await chain.connect(LOCAL_HOST, LOCAL_ADDR, 0, macros)
            if decision.action == CONTINUE:
                decision = await chain.helo(LOCAL_HOST, macros)
            if decision.action == CONTINUE:
                decision = await chain.mail(sender, [], macros)
            for addr, *_ in job.recipients:
                if decision.action != CONTINUE:
                    break
                macros["rcpt_addr"] = addr
                decision = await chain.rcpt(addr, [], macros)
            if decision.action == CONTINUE:
                decision = await chain.data(macros)
            if decision.action == CONTINUE:
                where = f"from local; from=<{sender}> to=<{first}>"
                checker = MilterHeaderChecks(self.header_checks, job.queue_id, where)
                decision = await job.run(chain, macros, checker)
                if decision.action == CONTINUE and checker.decision is not None:
                    decision = checker.decision
                hold = decision.hold or checker.hold
        finally:
            chain.quit()
        return self._outcome(job, sender, first, decision, hold)

    def _outcome(self, job, sender: str, rcpt: str, decision: Decision, hold) -> LocalOutcome:
        qid = job.queue_id
        if hold is not None and decision.action == CONTINUE:
            log.info(
                "%s: milter-hold: END-OF-MESSAGE from local: milter triggers HOLD action; "
                "from=<%s> to=<%s>: %s",
                qid,
                sender,
                rcpt,
                hold,
            )
        if decision.action == CONTINUE:
            return LocalOutcome(CONTINUE, hold=hold)
        if decision.action == ACTION_DISCARD:
            log.info(
                "%s: milter-discard: END-OF-MESSAGE from local: milter triggers DISCARD action; "
                "from=<%s> to=<%s>",
                qid,
                sender,
                rcpt,
            )
        else:
            text = decision.reply[4:] if decision.reply[:3].isdigit() else decision.reply
            log.info(
                "%s: milter-reject: END-OF-MESSAGE from local: %s; from=<%s> to=<%s>",
                qid,
                text.replace("\r\n", " "),
                sender,
                rcpt,
            )
        return LocalOutcome(decision.action, decision.reply, hold)
