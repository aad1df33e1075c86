"""cli.log - write a line to the mail log (postlog), or read the log

SYNOPSIS
    mta log [-c DIR] [-v] [-i] [-p PRIORITY] [-t TAG] [TEXT...]
    mta log [-c DIR] --tail [N]              # the last N lines (default 10)
    mta log [-c DIR] -f [--tail N]           # and every new line, until ^C
    mta log [-c DIR] --json [--tail N] [-f]  # delivery events as JSON lines

DESCRIPTION
    Logs TEXT, or each line of standard input when there is no TEXT, in
    the maillog form of every other mta program, where the configuration
    sends the log (maillog_file, else syslog). The tag is
    SYSLOG_NAME/postlog unless -t gives another; -p sets the severity:
    info (the default), warning (warn), error (err), fatal or panic,
    which prefixes the text as Postfix does. -i (include the process id)
    is accepted; mta's lines always carry it. When standard error is a
    terminal the line is also shown there. With no TEXT and a terminal
    on standard input there is nothing to log: the usage is shown and
    the exit status is 1.

    --tail and -f read the log instead (maillog_file; a log that goes to
    syslog is read with the system's tools): --tail prints its last N
    lines, -f prints the last lines (10, or --tail N) and then each new
    line as it is written, following the log across rotation, until
    interrupted, as "tail -F" does. Postfix's postlog has neither flag.

    --json prints delivery events, one JSON object per line
    (common/events.py has the keys): the lines of event_log_file when
    it is set and exists, else events derived from maillog_file's status
    lines (log/maillog_events.py); with --tail N only the last N, with
    -f the event log's new lines as they come.

SECURITY
    Runs with the invoker's privileges; the text is the invoker's and
    is cleaned of control characters by mta.log.
"""

from __future__ import annotations

import json
import os
import sys

from mta import log
from mta.cli.common import fatal, load, make_parser
from mta.common.events import read_events as read_events_file
from mta.log.maillog_events import events_from_lines
from mta.log.read import follow, last_lines

TAIL_DEFAULT = 10  # lines --tail and -f show when no N is given

# -p name -> (prefix in the line, syslog severity)
PRIORITIES: dict[str, tuple[str, int]] = {
    "info": ("", 6),
    "warn": ("warning: ", 4),
    "warning": ("warning: ", 4),
    "err": ("error: ", 3),
    "error": ("error: ", 3),
    "fatal": ("fatal: ", 2),
    "panic": ("panic: ", 0),
}


def _emit(text: str, priority: str) -> None:
    prefix, severity = PRIORITIES[priority]
    if priority == "info":
        log.info("%s", text)
    elif prefix == "warning: ":
        log.warning("%s", text)
    elif prefix == "error: ":
        log.error("%s", text)
    else:  # fatal() and panic() would end this process: log the line only
        log._emit(prefix + text, severity)


def _parser(command: str):
    parser = make_parser(command, "write a line to the mail log (postlog), or read the log")
    parser.add_argument("-i", dest="pid", action="store_true", help="include the process id")
    parser.add_argument(
        "-p",
        dest="priority",
        default="info",
        metavar="PRIORITY",
        help="info, warning, error, fatal or panic (default: info)",
    )
    parser.add_argument("-t", dest="tag", metavar="TAG", help="tag (default: SYSLOG_NAME/postlog)")
    parser.add_argument(
        "-f", dest="follow", action="store_true", help="show new log lines as they come, until ^C"
    )
    parser.add_argument(
        "--tail",
        type=int,
        nargs="?",
        const=TAIL_DEFAULT,
        metavar="N",
        help=f"show the last N lines of the log (default: {TAIL_DEFAULT})",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="delivery events, one JSON object per line (event_log_file, else the maillog)",
    )
    parser.add_argument("text", nargs="*", help="the text; standard input when absent")
    return parser


def read_events(cfg, command: str, tail: int | None, follow_it: bool) -> int:
    """--json: the event log, or events derived from the maillog when there is none."""
    path = cfg.get("event_log_file").strip()
    out = sys.stdout
    if path and os.path.exists(path):
        if follow_it:
            follow(path, sys.stdout.buffer, TAIL_DEFAULT if tail is None else tail)
            return 0
        try:
            events = list(read_events_file(path))
        except OSError as exc:
            return fatal(command, f"open {path}: {exc.strerror}")
    else:
        if follow_it:
            return fatal(command, "-f --json follows event_log_file, which is not set or not there")
        maillog = cfg.get("maillog_file")
        if not maillog:
            return fatal(command, "neither event_log_file nor maillog_file is set")
        try:
            with open(maillog, encoding="utf-8", errors="replace") as f:
                events = list(events_from_lines(f))
        except OSError as exc:
            return fatal(command, f"open {maillog}: {exc.strerror}")
    if tail is not None:
        events = events[-tail:] if tail else []
    for event in events:
        out.write(json.dumps(event, ensure_ascii=False) + "\n")
    out.flush()
    return 0


def read_log(cfg, command: str, tail: int | None, follow_it: bool) -> int:
    """--tail and -f: show the maillog_file."""
    path = cfg.get("maillog_file")
    if not path:
        return fatal(command, "maillog_file is not set: the log goes to syslog; read it there")
    count = TAIL_DEFAULT if tail is None else tail
    out = sys.stdout.buffer
    if follow_it:
        follow(path, out, count)
        return 0
    try:
        out.write(b"".join(last_lines(path, count)))
    except OSError as exc:
        return fatal(command, f"open {path}: {exc.strerror}")
    out.flush()
    return 0


def main(argv: list[str], command: str) -> int:
    parser = _parser(command)
    args = parser.parse_args(argv)
    reading = args.follow or args.tail is not None or args.json
    if reading and args.text:
        parser.error("--tail and -f read the log: they take no TEXT")
    if reading and args.tail is not None and args.tail < 0:
        parser.error("--tail needs a number of lines, 0 or more")
    if not reading and not args.text and sys.stdin.isatty():
        parser.print_usage(sys.stderr)
        return fatal(
            command, "no TEXT, and standard input is a terminal (--tail or -f read the log)"
        )
    priority = args.priority.lower()
    if priority not in PRIORITIES:
        return fatal(command, f"unknown priority: {args.priority}", 2)
    cfg = load(args)
    if args.json:
        return read_events(cfg, command, args.tail, args.follow)
    if reading:
        return read_log(cfg, command, args.tail, args.follow)
    try:
        if args.tag:
            log.init("", cfg.with_overrides({"syslog_name": args.tag}))
        else:
            log.init("postlog", cfg)
    except OSError as exc:
        return fatal(command, f"open {exc.filename}: {exc.strerror}")
    tag = args.tag or f"{cfg.get('syslog_name')}/postlog"
    echo = sys.stderr.isatty()
    lines = [" ".join(args.text)] if args.text else (ln.rstrip("\n") for ln in sys.stdin)
    for text in lines:
        _emit(text, priority)
        if echo:
            sys.stderr.write(f"{tag}: {PRIORITIES[priority][0]}{text}\n")
    return 0
