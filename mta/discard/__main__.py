"""Run the discard agent as a service of the master."""

from mta.common.deliver_agent import run_delivery_agent
from mta.discard import deliver

if __name__ == "__main__":
    run_delivery_agent("discard", deliver, busy_at=100)
