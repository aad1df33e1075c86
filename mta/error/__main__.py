"""Run the error agent (or, under the service name "retry", the retry agent)."""

import sys

from mta.common.deliver_agent import run_delivery_agent
from mta.error import make_deliver
from mta.master.mail_server import parse_service_argv

if __name__ == "__main__":
    name = parse_service_argv(sys.argv[1:]).name
    run_delivery_agent(name or "error", make_deliver(retry=name == "retry"), busy_at=100)
