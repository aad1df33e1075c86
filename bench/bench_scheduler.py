"""The qmgr scheduler kernel against its reference: push, pick and feedback."""

import pytest

from mta.qmgr import kernel

IMPLS = {"ref": kernel.Scheduler_ref, "c": kernel.Scheduler_c}
ENTRIES = 10_000
DESTS = 100


def cycle(cls):
    """10,000 batches over 100 destinations, each picked and finished."""
    s = cls()
    s.set_transport("smtp", 100)
    dests = [s.destination("smtp", f"d{i}.example", 5, 20) for i in range(DESTS)]
    for i in range(ENTRIES):
        s.push(dests[i % DESTS], i)
    done = 0
    now = 0.0
    while done < ENTRIES:
        inflight = []
        while (p := s.pick(now)) is not None:
            inflight.append(p[0])
        for d in inflight:
            s.done(d, True, now, 300.0)
        done += len(inflight)
    return done


@pytest.mark.benchmark(group="scheduler: 10,000 batches over 100 destinations")
@pytest.mark.parametrize("impl", [name for name, cls in IMPLS.items() if cls])
def test_schedule_10000(benchmark, impl):
    assert benchmark(cycle, IMPLS[impl]) == ENTRIES
