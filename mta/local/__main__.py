"""Run the local delivery agent as a service of the master."""

from mta.common.deliver_agent import run_delivery_agent
from mta.local import deliver, verify

if __name__ == "__main__":
    run_delivery_agent("local", deliver, busy_at=1, verify=verify)
