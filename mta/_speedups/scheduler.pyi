"""Type stub for the compiled scheduler kernel (same API as scheduler_ref)."""

from collections import deque

class Transport:
    name: str
    limit: int
    busy: int
    ring: deque

class Destination:
    transport: Transport
    key: str
    entries: deque
    busy: int
    window: float
    limit: int
    init_window: int
    dead_until: float
    next_time: float
    def is_dead(self) -> bool: ...
    def can_start(self, now: float) -> bool: ...

class Scheduler:
    transports: dict[str, Transport]
    dests: dict[tuple[str, str], Destination]
    waiting: int
    def set_transport(self, name: str, limit: int) -> None: ...
    def destination(
        self,
        transport: str,
        key: str,
        init_window: int,
        limit: int,
        pos_num: float = ...,
        pos_pow: float = ...,
        neg_num: float = ...,
        neg_pow: float = ...,
        cohort_limit: float = ...,
        rate_delay: float = ...,
    ) -> Destination: ...
    def find(self, transport: str, key: str) -> Destination | None: ...
    def push(self, d: Destination, entry: object) -> None: ...
    def drain(self, d: Destination) -> list: ...
    def pick(self, now: float) -> tuple[Destination, object] | None: ...
    def done(self, d: Destination, ok: bool, now: float, revive_after: float) -> bool: ...
    def revive(self, now: float) -> list[Destination]: ...
    def next_event(self, now: float) -> float | None: ...
    def forget_idle(self) -> int: ...

def parse_feedback(text: str) -> tuple[float, float]: ...
