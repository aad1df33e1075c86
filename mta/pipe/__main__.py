"""Run the pipe delivery agent as a service of the master (master.cf command "pipe")."""

from mta.common.deliver_agent import run_delivery_agent
from mta.pipe import deliver

if __name__ == "__main__":
    run_delivery_agent("pipe", deliver, busy_at=100)
