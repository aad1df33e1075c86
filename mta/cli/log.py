"""cli.log - write a line to the mail log (postlog)

SYNOPSIS
    mta log [-c DIR] [-v] [-i] [-p PRIORITY] [-t TAG] [TEXT...]

DESCRIPTION
    Logs TEXT, or each line of standard input when there is no TEXT, in
    the maillog form of every other mta program, where the configuration
    sends the log (maillog_file, else syslog). The tag is
    SYSLOG_NAME/postlog unless -t gives another; -p sets the severity:
    info (the default), warning (warn), error (err), fatal or panic,
    which prefixes the text as Postfix does. -i (include the process id)
    is accepted; mta's lines always carry it. When standard error is a
    terminal the line is also shown there.

SECURITY
    Runs with the invoker's privileges; the text is the invoker's and
    is cleaned of control characters by mta.log.
"""

from __future__ import annotations

import sys

from mta import log
from mta.cli.common import load, make_parser

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


def main(argv: list[str], command: str) -> int:
    parser = make_parser(command, "write a line to the mail log (postlog)")
    parser.add_argument("-i", dest="pid", action="store_true", help="include the process id")
    parser.add_argument(
        "-p",
        dest="priority",
        default="info",
        metavar="PRIORITY",
        help="info, warning, error, fatal or panic (default: info)",
    )
    parser.add_argument("-t", dest="tag", metavar="TAG", help="tag (default: SYSLOG_NAME/postlog)")
    parser.add_argument("text", nargs="*", help="the text; standard input when absent")
    args = parser.parse_args(argv)
    priority = args.priority.lower()
    if priority not in PRIORITIES:
        sys.stderr.write(f"mta {command}: fatal: unknown priority: {args.priority}\n")
        return 2
    cfg = load(args)
    try:
        if args.tag:
            log.init("", cfg.with_overrides({"syslog_name": args.tag}))
        else:
            log.init("postlog", cfg)
    except OSError as exc:
        sys.stderr.write(f"mta {command}: fatal: open {exc.filename}: {exc.strerror}\n")
        return 1
    tag = args.tag or f"{cfg.get('syslog_name')}/postlog"
    echo = sys.stderr.isatty()
    lines = [" ".join(args.text)] if args.text else (ln.rstrip("\n") for ln in sys.stdin)
    for text in lines:
        _emit(text, priority)
        if echo:
            sys.stderr.write(f"{tag}: {PRIORITIES[priority][0]}{text}\n")
    return 0
