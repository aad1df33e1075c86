"""scheduler_ref - the queue manager's per-destination queues; the spec for scheduler.pyx

SYNOPSIS
    from mta._speedups.scheduler_ref import Scheduler
    s = Scheduler()
    s.set_transport("smtp", 100)                    # deliveries in flight at most
    d = s.destination("smtp", "example.com", 5, 20, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0)
    s.push(d, entry)
    picked = s.pick(now)                            # (dest, entry) or None
    became_dead = s.done(d, ok, now, revive_after)  # feedback after the delivery

DESCRIPTION
    Work waits in one FIFO per destination (transport and next hop).
    pick() chooses the next delivery: transports take turns, and inside
    a transport the destinations that have work take turns, so one busy
    or slow destination never starves the others. A destination is
    skipped while its deliveries in flight fill its concurrency window,
    while it waits out its rate delay, or while it is dead; a transport
    is skipped while its deliveries fill its process limit.

    The window starts at the initial concurrency and moves with
    Postfix's feedback. Each feedback is "numerator / (window **
    power)": power 0 is a constant ("1"), power 1 is "1/concurrency".
    A success adds positive feedback to a credit; when the credit
    reaches one the window grows by it, up to the limit (0: no limit).
    A failure (the next hop itself failed) adds 1/window to the failed
    pseudo-cohorts and takes negative feedback off the window, never
    below 1; when the failed cohorts reach the cohort limit (0: never)
    the destination is dead until revive_after seconds have passed, and
    done() returns True so the caller can defer its waiting work
    (drain()). Any success clears the failed cohorts.

    Entries are opaque to the scheduler. Times are plain floats given
    by the caller, so the scheduler never reads a clock.

SECURITY
    Holds queue ids and addresses only; no input is parsed here.
"""

from __future__ import annotations

from collections import deque

EPSILON = 1e-9  # sums of feedback fractions (3 x 1/3) count as whole


def _round(x: float) -> float:
    """Windows move in steps of feedback sums: snap 3.9999999 to 4."""
    return float(round(x)) if abs(x - round(x)) < EPSILON else x


class Destination:
    """One transport + next hop: its waiting work and its window."""

    __slots__ = (
        "transport",
        "key",
        "entries",
        "busy",
        "window",
        "limit",
        "init_window",
        "pos_num",
        "pos_pow",
        "neg_num",
        "neg_pow",
        "cohort_limit",
        "rate_delay",
        "credit",
        "debit",
        "fail_cohorts",
        "dead_until",
        "next_time",
        "queued",
    )

    def __init__(
        self,
        transport: Transport,
        key: str,
        init_window: int,
        limit: int,
        pos_num: float,
        pos_pow: float,
        neg_num: float,
        neg_pow: float,
        cohort_limit: float,
        rate_delay: float,
    ) -> None:
        self.transport = transport
        self.key = key
        self.entries: deque = deque()
        self.busy = 0
        self.init_window = max(1, init_window)
        self.limit = limit
        if rate_delay > 0:
            self.init_window = self.limit = 1
        self.window = float(self.init_window)
        if self.limit > 0 and self.window > self.limit:
            self.window = float(self.limit)
        self.pos_num, self.pos_pow = pos_num, pos_pow
        self.neg_num, self.neg_pow = neg_num, neg_pow
        self.cohort_limit = cohort_limit
        self.rate_delay = rate_delay
        self.credit = 0.0
        self.debit = 0.0
        self.fail_cohorts = 0.0
        self.dead_until = 0.0  # > 0 while dead
        self.next_time = 0.0  # earliest next delivery (rate delay)
        self.queued = False  # in its transport's ready ring

    def is_dead(self) -> bool:
        return self.dead_until > 0.0

    def can_start(self, now: float) -> bool:
        return (
            self.dead_until == 0.0
            and self.busy < int(self.window)
            and self.next_time <= now
            and bool(self.entries)
        )


class Transport:
    __slots__ = ("name", "limit", "busy", "ring")

    def __init__(self, name: str, limit: int) -> None:
        self.name = name
        self.limit = limit  # deliveries in flight; 0 = no limit
        self.busy = 0
        self.ring: deque = deque()  # destinations with waiting work


class Scheduler:
    def __init__(self) -> None:
        self.transports: dict[str, Transport] = {}
        self.order: deque = deque()  # transports, in turn
        self.dests: dict[tuple[str, str], Destination] = {}
        self.waiting = 0  # entries in all destination queues

    # ---- set-up
    def set_transport(self, name: str, limit: int) -> None:
        t = self.transports.get(name)
        if t is None:
            t = self.transports[name] = Transport(name, limit)
            self.order.append(t)
        else:
            t.limit = limit

    def destination(
        self,
        transport: str,
        key: str,
        init_window: int,
        limit: int,
        pos_num: float = 1.0,
        pos_pow: float = 0.0,
        neg_num: float = 1.0,
        neg_pow: float = 0.0,
        cohort_limit: float = 1.0,
        rate_delay: float = 0.0,
    ) -> Destination:
        """The destination (created on first use with these settings)."""
        d = self.dests.get((transport, key))
        if d is None:
            t = self.transports.get(transport)
            if t is None:
                self.set_transport(transport, 0)
                t = self.transports[transport]
            d = Destination(
                t,
                key,
                init_window,
                limit,
                pos_num,
                pos_pow,
                neg_num,
                neg_pow,
                cohort_limit,
                rate_delay,
            )
            self.dests[(transport, key)] = d
        return d

    def find(self, transport: str, key: str) -> Destination | None:
        return self.dests.get((transport, key))

    # ---- work
    def push(self, d: Destination, entry: object) -> None:
        d.entries.append(entry)
        self.waiting += 1
        if not d.queued:
            d.queued = True
            d.transport.ring.append(d)

    def drain(self, d: Destination) -> list:
        """Take every waiting entry of d (to defer them, say)."""
        out = list(d.entries)
        d.entries.clear()
        self.waiting -= len(out)
        return out

    def pick(self, now: float) -> tuple[Destination, object] | None:
        """The next delivery to start, or None when nothing may start now."""
        for _ in range(len(self.order)):
            t = self.order[0]
            self.order.rotate(-1)
            if t.limit and t.busy >= t.limit:
                continue
            ring = t.ring
            for _ in range(len(ring)):
                d = ring.popleft()
                if not d.entries:
                    d.queued = False
                    continue
                if not d.can_start(now):
                    ring.append(d)
                    continue
                entry = d.entries.popleft()
                self.waiting -= 1
                d.busy += 1
                t.busy += 1
                if d.rate_delay > 0:
                    d.next_time = now + d.rate_delay
                if d.entries:
                    ring.append(d)
                else:
                    d.queued = False
                # the next pick starts with the transport after this one
                return d, entry
        return None

    def done(self, d: Destination, ok: bool, now: float, revive_after: float) -> bool:
        """One delivery to d ended; ok is False when the next hop failed.

        Returns True when this failure made d dead."""
        d.busy -= 1
        d.transport.busy -= 1
        if d.is_dead():
            return False
        if ok:
            d.fail_cohorts = 0.0
            d.debit = 0.0
            if d.limit <= 0 or d.window < d.limit:
                d.credit += _feedback(d.pos_num, d.pos_pow, d.window)
                if d.credit >= 1.0 - EPSILON:
                    d.window = _round(d.window + d.credit)
                    d.credit = 0.0
                    if d.limit > 0 and d.window > d.limit:
                        d.window = float(d.limit)
            return False
        d.credit = 0.0
        d.fail_cohorts += 1.0 / d.window
        if d.cohort_limit > 0 and d.fail_cohorts >= d.cohort_limit - EPSILON:
            d.dead_until = now + revive_after
            return True
        d.debit += _feedback(d.neg_num, d.neg_pow, d.window)
        if d.debit >= 1.0 - EPSILON:
            d.window = max(1.0, _round(d.window - d.debit))
            d.debit = 0.0
        return False

    def revive(self, now: float) -> list[Destination]:
        """Bring dead destinations whose time is up back to life; return them."""
        out = []
        for d in self.dests.values():
            if d.dead_until and d.dead_until <= now:
                d.dead_until = 0.0
                d.fail_cohorts = 0.0
                d.window = float(d.init_window)
                out.append(d)
        return out

    def next_event(self, now: float) -> float | None:
        """The earliest time a waiting destination becomes startable, if later than now."""
        best: float | None = None
        for d in self.dests.values():
            t = 0.0
            if d.dead_until:
                t = d.dead_until
            elif d.entries and d.next_time > now:
                t = d.next_time
            if t and (best is None or t < best):
                best = t
        return best

    def forget_idle(self) -> int:
        """Drop destinations with no work, nothing in flight and normal state."""
        idle = [
            k
            for k, d in self.dests.items()
            if not d.entries and not d.busy and not d.dead_until and d.next_time == 0.0
        ]
        for k in idle:
            del self.dests[k]
        return len(idle)


def _feedback(num: float, power: float, window: float) -> float:
    return num / (window**power) if power else num


def parse_feedback(text: str) -> tuple[float, float]:
    """Postfix's feedback notation: "1", "0.5", "1/concurrency", "2/concurrency"."""
    value = text.strip().replace(" ", "")
    num_text, slash, denom = value.partition("/")
    try:
        num = float(num_text)
    except ValueError:
        raise ValueError(f"bad feedback value: {text!r}") from None
    if not slash:
        return num, 0.0
    if denom != "concurrency":
        raise ValueError(f"bad feedback value: {text!r}")
    return num, 1.0
