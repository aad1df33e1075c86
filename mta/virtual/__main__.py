"""Run the virtual delivery agent as a service of the master."""

from mta.common.deliver_agent import run_delivery_agent
from mta.virtual import deliver

if __name__ == "__main__":
    run_delivery_agent("virtual", deliver, busy_at=1)
