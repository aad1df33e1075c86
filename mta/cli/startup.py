"""cli.startup - what "mta start" and "mta start-fg" tell the user

SYNOPSIS
    from mta.cli.startup import where_lines, log_size, failure_reason
    for line in where_lines(cfg): script.info(line)
    mark = log_size(cfg)
    ...                                     # the master fails to start
    why = failure_reason(cfg, mark)         # "bind 127.0.0.1 port 2525: Address ..."

DESCRIPTION
    where_lines() says where SMTP listens (the address and port of each
    inet smtpd service of master.cf, as the master will bind them) and
    where local mail for the invoking user is delivered: the file or
    Maildir under home_mailbox, or the mailbox in mail_spool_directory;
    mailbox_transport and mailbox_command are named when they take over.

    log_size() and failure_reason() let "mta start" show why a master it
    started in the background gave up: the error, fatal and panic lines
    the master wrote to maillog_file after the mark, without their
    timestamp and tag, joined by "; ". None when maillog_file is not set
    or the log says nothing (the caller then points at the log).

SECURITY
    Runs with the invoker's privileges; reads master.cf, main.cf and the
    tail of the maillog the invoker may read.
"""

from __future__ import annotations

import os
import pwd
import re

from mta.config import Config
from mta.config.master_cf import read_master_cf
from mta.master.listen import listen_key

FAILURE_LINE_RE = re.compile(r"\]: (?:error|fatal|panic): (.*)$")  # a master's complaint
FAILURE_READ_LIMIT = 65536  # bytes of new log read for the reason


def smtp_addresses(cfg: Config) -> list[str]:
    """ADDRESS:PORT of every inet smtpd (or postscreen) listener in master.cf
    ("[::1]:25" for IPv6)."""
    out = []
    for entry in read_master_cf(cfg.master_cf, cfg.get_int("default_process_limit")):
        if entry.type != "inet" or entry.command not in ("smtpd", "postscreen"):
            continue
        _, addrs, port = listen_key(entry, cfg)
        out += [f"[{a}]:{port}" if ":" in a else f"{a}:{port}" for _, a in addrs]
    return out


def mailbox_of(cfg: Config, user: str, home: str) -> str:
    """Where local(8) puts user's mail, in words."""
    if cfg.get("mailbox_transport"):
        return f"the {cfg.get('mailbox_transport')} transport (mailbox_transport)"
    if cfg.get("mailbox_command"):
        return f"the command {cfg.get('mailbox_command')} (mailbox_command)"
    home_mailbox = cfg.get("home_mailbox")
    if home_mailbox:
        return os.path.join(home, home_mailbox) + (
            " (Maildir)" if home_mailbox.endswith("/") else ""
        )
    return os.path.join(cfg.get("mail_spool_directory"), user)


def where_lines(cfg: Config) -> list[str]:
    """The lines start and start-fg print: where SMTP listens, where mail goes."""
    addrs = smtp_addresses(cfg)
    lines = [f"SMTP listens on {', '.join(addrs)}" if addrs else "no SMTP service in master.cf"]
    try:
        pw = pwd.getpwuid(os.getuid())
        user, home = pw.pw_name, pw.pw_dir
    except KeyError:
        return lines
    lines.append(f"local mail for {user} is delivered to {mailbox_of(cfg, user, home)}")
    return lines


def log_size(cfg: Config) -> int:
    """The size of maillog_file now (0 when it is not set or missing)."""
    path = cfg.get("maillog_file")
    try:
        return os.path.getsize(path) if path else 0
    except OSError:
        return 0


def failure_reason(cfg: Config, mark: int) -> str | None:
    """The error lines logged since mark, as one line; None when there are none."""
    path = cfg.get("maillog_file")
    if not path:
        return None
    try:
        with open(path, "rb") as f:
            f.seek(mark)
            text = f.read(FAILURE_READ_LIMIT).decode("utf-8", "replace")
    except OSError:
        return None
    reasons = [m.group(1) for m in map(FAILURE_LINE_RE.search, text.splitlines()) if m]
    return "; ".join(dict.fromkeys(reasons)) or None
