"""Run the bounce address handler as a service of the master."""

from mta.bouncein import deliver
from mta.common.deliver_agent import run_delivery_agent

if __name__ == "__main__":
    run_delivery_agent("bouncein", deliver)
