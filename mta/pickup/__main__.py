"""python -m mta.pickup - the pickup service, as the master starts it."""

from mta.cleanup import Cleanup
from mta.master.trigger_server import run_trigger_server
from mta.pickup import Pickup

_state: dict = {}


def handle_trigger(data: bytes, ctx) -> None:
    pickup = _state.get("pickup")
    if pickup is None:
        pickup = _state["pickup"] = Pickup(ctx.cfg, Cleanup(ctx.cfg))
    pickup.scan()


run_trigger_server("pickup", handle_trigger)
