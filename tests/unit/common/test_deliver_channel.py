"""qmgr-to-agent connections: kept for the next request, retried when they broke,
never a done recipient delivered again."""

import asyncio

from mta import log
from mta.common import deliver_agent
from mta.common.deliver_agent import handle_request, serve_connection
from mta.common.deliver_request import close_spares, deliver
from mta.config import load_config
from mta.queue.queue_file import mark_done, read_queue_file
from tests.support.agent import queue_message, request_for
from tests.support.instance import make_instance
from tests.support.unix_server import HandlerServer


class Agent:
    """An agent on a real socket that counts connections and deliveries."""

    def __init__(self, cfg, tmp_path, one_request_per_connection=False):
        self.connections = 0
        self.delivered: list[str] = []
        self.path = str(tmp_path / "agent.sock")
        log.init("agent", cfg)  # status lines go to the instance's maillog_file

        async def deliver_fn(job):
            for r in job.pending():
                self.delivered.append(r.address)
                job.sent(r, "ok")

        async def handler(reader, writer, ctx):
            self.connections += 1
            try:
                if one_request_per_connection:
                    await handle_request(reader, writer, ctx, deliver_fn)
                else:
                    await serve_connection(reader, writer, ctx, deliver_fn)
            finally:
                writer.close()

        self.server = HandlerServer(self.path, handler, cfg)

    def stop(self):
        self.server.stop()


def setup(tmp_path):
    cfg = load_config(str(make_instance(tmp_path)))
    return cfg, [queue_message(cfg, [f"r{i}@one.example"]) for i in range(3)]


def send_all(agent, msgs, pause=0.0):
    async def main():
        results = []
        for msg in msgs:
            results.append(await deliver(agent.path, request_for(msg, "one.example"), 10))
            await asyncio.sleep(pause)
        close_spares()
        return results

    return asyncio.run(main())


def test_one_connection_carries_many_requests(tmp_path):
    cfg, msgs = setup(tmp_path)
    agent = Agent(cfg, tmp_path)
    try:
        results = send_all(agent, msgs)
    finally:
        agent.stop()
    assert [[st.action for st in r.statuses] for r in results] == [["delivered"]] * 3
    assert agent.connections == 1
    assert agent.delivered == ["r0@one.example", "r1@one.example", "r2@one.example"]


def test_a_connection_the_agent_closed_is_replaced_without_losing_the_request(tmp_path):
    cfg, msgs = setup(tmp_path)
    agent = Agent(cfg, tmp_path, one_request_per_connection=True)
    try:
        results = send_all(agent, msgs)
    finally:
        agent.stop()
    assert all(not r.error and len(r.statuses) == 1 for r in results)
    assert agent.connections == 3
    assert len(agent.delivered) == 3


def test_the_agent_closes_a_connection_left_idle(tmp_path, monkeypatch):
    monkeypatch.setattr(deliver_agent, "REUSE_IDLE", 0.05)
    cfg, msgs = setup(tmp_path)
    agent = Agent(cfg, tmp_path)
    try:
        results = send_all(agent, msgs[:2], pause=0.3)  # longer than the agent waits
    finally:
        agent.stop()
    assert all(not r.error for r in results)
    assert agent.connections == 2


def test_a_recipient_already_done_is_reported_but_not_delivered_or_logged(tmp_path):
    cfg = load_config(str(make_instance(tmp_path)))
    msg = queue_message(cfg, ["done@one.example", "new@one.example"])
    mark_done(msg.path, [msg.recipients[0].offset])  # a first try got this far
    agent = Agent(cfg, tmp_path)
    try:
        (result,) = send_all(agent, [msg])
    finally:
        agent.stop()
    assert agent.delivered == ["new@one.example"]
    assert [(st.address, st.action) for st in result.statuses] == [
        ("done@one.example", "delivered"),
        ("new@one.example", "delivered"),
    ]
    assert all(r.done for r in read_queue_file(msg.path).recipients)
    log = (tmp_path / "maillog").read_text()
    assert "to=<new@one.example>" in log and "to=<done@one.example>" not in log
