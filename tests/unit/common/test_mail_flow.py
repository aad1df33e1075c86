"""in_flow_delay tokens through a real named pipe."""

import asyncio
import os
import time

from mta.common.mail_flow import FlowGate, FlowTokens, flow_path


def queue_dir(tmp_path):
    (tmp_path / "private").mkdir()
    return str(tmp_path)


def test_tokens_let_messages_through_without_waiting(tmp_path):
    q = queue_dir(tmp_path)
    tokens = FlowTokens(q)
    tokens.put(3)
    gate = FlowGate(q)

    async def take3():
        return [await gate.take(1.0) for _ in range(3)]

    assert all(w < 0.05 for w in asyncio.run(take3()))
    tokens.close()


def test_no_token_waits_at_most_the_delay(tmp_path):
    q = queue_dir(tmp_path)
    tokens = FlowTokens(q)
    gate = FlowGate(q)
    waited = asyncio.run(gate.take(0.3))
    assert 0.25 <= waited < 1.0
    tokens.close()


def test_a_token_that_arrives_ends_the_wait(tmp_path):
    q = queue_dir(tmp_path)
    tokens = FlowTokens(q)
    gate = FlowGate(q)

    async def main():
        loop = asyncio.get_running_loop()
        loop.call_later(0.1, tokens.put, 2)
        return await asyncio.gather(gate.take(3.0), gate.take(3.0))

    start = time.monotonic()
    waits = asyncio.run(main())
    assert time.monotonic() - start < 1.0  # both waiters woke on the tokens
    assert all(w < 1.0 for w in waits)
    tokens.close()


def test_without_qmgr_nobody_waits(tmp_path):
    q = queue_dir(tmp_path)
    gate = FlowGate(q)
    assert asyncio.run(gate.take(2.0)) == 0.0  # no pipe at all
    tokens = FlowTokens(q)
    tokens.close()  # the pipe is there, but no qmgr holds it
    start = time.monotonic()
    assert asyncio.run(FlowGate(q).take(2.0)) < 0.5
    assert time.monotonic() - start < 0.5
    assert os.path.exists(flow_path(q))


def test_blocking_take_for_pickup(tmp_path):
    q = queue_dir(tmp_path)
    tokens = FlowTokens(q)
    gate = FlowGate(q)
    tokens.put(1)
    assert gate.take_blocking(1.0) < 0.05  # a token is there
    waited = gate.take_blocking(0.2)  # none left: waits the delay out
    assert 0.15 <= waited < 1.0
    tokens.close()
