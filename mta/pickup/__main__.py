"""python -m mta.pickup - the pickup service, as the master starts it.

A new pickup process scans maildrop/ once at start (the initial wakeup),
so that files a killed predecessor had not finished are picked up at once
rather than at the next trigger."""

from mta.cleanup import Cleanup
from mta.master.trigger_server import run_trigger_server
from mta.pickup import Pickup

_state: dict = {}


def handle_trigger(data: bytes, ctx) -> None:
    pickup = _state.get("pickup")
    if pickup is None:
        pickup = _state["pickup"] = Pickup(ctx.cfg, Cleanup(ctx.cfg))
    pickup.scan()


run_trigger_server("pickup", handle_trigger, initial=b"W")
