"""cli.kick - poke a mail system service (postkick)

SYNOPSIS
    mta kick [-c CONFIG_DIR] [-v] CLASS SERVICE REQUEST
    mta kick public pickup W

DESCRIPTION
    Sends REQUEST (one or more characters, "W" to wake the service) to
    SERVICE's socket or fifo in CLASS (public or private) under
    queue_directory, as postkick does, so a script can make pickup or
    qmgr look now instead of at its next periodic wakeup. Exits 0 when
    the request was delivered, 1 with one line on stderr when nobody
    listens (the mail system is stopped or the service does not exist).

SECURITY
    Writes a few bytes to a socket; private/ is reachable only by
    mail_owner and root.
"""

from __future__ import annotations

import sys

from mta.cli.common import load_or_report, make_parser
from mta.common.trigger import send_trigger
from mta.queue.paths import service_socket_path


def main(argv: list[str], command: str = "kick") -> int:
    parser = make_parser(command, "Poke a mail system service, as postkick does.")
    parser.add_argument("klass", metavar="CLASS", choices=("public", "private"))
    parser.add_argument("service", metavar="SERVICE")
    parser.add_argument("request", metavar="REQUEST")
    args = parser.parse_args(argv)
    if "/" in args.service or args.service in (".", ".."):
        parser.error(f"bad service name: {args.service}")
    cfg = load_or_report(args, command)
    if cfg is None:
        return 1
    path = service_socket_path(cfg.get("queue_directory"), args.service, args.klass == "private")
    if not send_trigger(path, args.request.encode()):
        sys.stderr.write(f"mta {command}: warning: {path}: nobody listens\n")
        return 1
    return 0
