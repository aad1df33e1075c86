"""Run the smtp delivery agent; it speaks LMTP when its master.cf command is "lmtp"
(MTA_PROGRAM from the master), its service name is "lmtp", or it is given the
argument "lmtp"."""

import os
import sys

from mta.common import tls_libssl
from mta.common.deliver_agent import run_delivery_agent
from mta.master.mail_server import ServiceUsage, parse_service_argv
from mta.smtp import make_deliver

SMTP_BUSY_AT = 100  # concurrent deliveries one process takes before it reports busy

if __name__ == "__main__":
    try:
        args = parse_service_argv(sys.argv[1:])
    except ServiceUsage:
        args = None
    name = (args.name if args else "") or "smtp"
    lmtp = (
        os.environ.get("MTA_PROGRAM") == "lmtp"
        or name == "lmtp"
        or bool(args and "lmtp" in args.args)
    )
    tls_libssl.bind()  # curves, verify depth, shared sessions: found while still root
    run_delivery_agent(name, make_deliver(lmtp), busy_at=SMTP_BUSY_AT)
