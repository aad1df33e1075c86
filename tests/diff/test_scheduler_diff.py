"""The scheduler kernel: reference and compiled versions behave alike, and behave right."""

import os
import random

import pytest

from mta.qmgr import kernel

IMPLS = [pytest.param(kernel.Scheduler_ref, id="ref")]
if kernel.Scheduler_c is not None:
    IMPLS.append(pytest.param(kernel.Scheduler_c, id="c"))


@pytest.fixture(params=IMPLS)
def Scheduler(request):
    return request.param


def test_extension_loaded():
    if os.environ.get("MTA_NO_EXTENSIONS"):
        pytest.skip("pure build")
    assert kernel.Scheduler is kernel.Scheduler_c


def drain_picks(s, now=0.0):
    out = []
    while (p := s.pick(now)) is not None:
        out.append(p)
    return out


def test_window_limits_deliveries_in_flight(Scheduler):
    s = Scheduler()
    s.set_transport("smtp", 100)
    d = s.destination("smtp", "a.example", 3, 20)
    for i in range(10):
        s.push(d, i)
    picks = drain_picks(s)
    assert [e for _, e in picks] == [0, 1, 2]
    s.done(d, True, 0.0, 300)
    assert s.pick(0.0)[1] == 3


def test_destinations_take_turns(Scheduler):
    s = Scheduler()
    s.set_transport("smtp", 100)
    a = s.destination("smtp", "a", 100, 100)
    b = s.destination("smtp", "b", 100, 100)
    for i in range(3):
        s.push(a, f"a{i}")
    s.push(b, "b0")
    order = [e for _, e in drain_picks(s)]
    assert order.index("b0") == 1  # b does not wait behind all of a


def test_process_limit_caps_a_transport(Scheduler):
    s = Scheduler()
    s.set_transport("local", 2)
    for k in "abc":
        s.push(s.destination("local", k, 5, 5), k)
    assert len(drain_picks(s)) == 2


def test_positive_feedback_grows_window_to_limit(Scheduler):
    s = Scheduler()
    d = s.destination("smtp", "x", 2, 4)
    for _ in range(10):
        d.busy += 1
        d.transport.busy += 1
        s.done(d, True, 0.0, 300)
    assert d.window == 4


def test_failed_cohort_kills_destination_then_revives(Scheduler):
    s = Scheduler()
    d = s.destination("smtp", "x", 2, 20)
    dead = []
    for _ in range(2):
        d.busy += 1
        d.transport.busy += 1
        dead.append(s.done(d, False, 10.0, 300))
    assert dead[-1] is True and d.is_dead()
    s.push(d, "waiting")
    assert s.pick(11.0) is None
    assert s.next_event(11.0) == 310.0
    assert s.revive(310.0) == [d]
    assert s.pick(310.0)[1] == "waiting"


def test_rate_delay_spaces_deliveries(Scheduler):
    s = Scheduler()
    d = s.destination("smtp", "slow", 5, 20, rate_delay=2.0)
    s.push(d, 1)
    s.push(d, 2)
    assert s.pick(0.0)[1] == 1
    s.done(d, True, 0.5, 300)
    assert s.pick(1.0) is None
    assert s.pick(2.0)[1] == 2


def trace(Scheduler, seed):
    """Run a random workload; return everything observable."""
    rnd = random.Random(seed)
    s = Scheduler()
    for t in ("smtp", "local", "relay"):
        s.set_transport(t, rnd.choice([0, 1, 3, 10]))
    dests = []
    for i in range(rnd.randrange(1, 8)):
        t = rnd.choice(["smtp", "local", "relay"])
        dests.append(
            s.destination(
                t,
                f"d{i}",
                rnd.randrange(1, 6),
                rnd.choice([0, 1, 5, 20]),
                1.0,
                rnd.choice([0.0, 1.0]),
                1.0,
                rnd.choice([0.0, 1.0]),
                rnd.choice([0.0, 1.0, 2.0]),
                rnd.choice([0.0, 0.0, 1.5]),
            )
        )
    now, out, inflight, n = 0.0, [], [], 0
    for _ in range(400):
        op = rnd.random()
        if op < 0.4:
            d = rnd.choice(dests)
            s.push(d, n)
            n += 1
        elif op < 0.7:
            p = s.pick(now)
            out.append(None if p is None else (p[0].key, p[1]))
            if p is not None:
                inflight.append(p[0])
        elif op < 0.9 and inflight:
            d = inflight.pop(rnd.randrange(len(inflight)))
            out.append(("done", d.key, s.done(d, rnd.random() < 0.7, now, 5.0), d.window))
        elif op < 0.95:
            out.append(("revive", [d.key for d in s.revive(now)]))
        else:
            d = rnd.choice(dests)
            out.append(("drain", s.drain(d)))
        now += rnd.choice([0.0, 0.1, 1.0])
        out.append(("next", s.next_event(now), s.waiting))
    return out


@pytest.mark.skipif(kernel.Scheduler_c is None, reason="extension not built")
@pytest.mark.parametrize("seed", range(200))
def test_c_agrees_with_ref(seed):
    assert trace(kernel.Scheduler_c, seed) == trace(kernel.Scheduler_ref, seed)
