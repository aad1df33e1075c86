"""A request's source address and EHLO name (egress pools): the session is bound to
that address, greets with that name, is cached per source, and statuses name it."""

from __future__ import annotations

import pytest

from mta.config import load_config
from mta.smtp import _cache_key, _scache_key, deliver
from mta.smtp.client import Settings
from tests.support.agent import queue_message, request_for
from tests.support.instance import make_instance
from tests.unit.smtp.peers import AgentServer, SinkHandler, sink


class PeerRecorder(SinkHandler):
    """Records, per message, the client's address and port and its HELO name."""

    def __init__(self) -> None:
        super().__init__()
        self.peers: list[tuple[str, int, str]] = []

    async def handle_DATA(self, server, session, envelope):
        self.peers.append((session.peer[0], session.peer[1], session.host_name))
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def recording_agent(tmp_path):
    ctl, handler = sink(PeerRecorder())
    cfg = load_config(
        str(
            make_instance(
                tmp_path,
                f"smtp_tcp_port = {ctl.port}\nsmtp_helo_name = default.example\n"
                "smtp_connection_cache_time_limit = 5s\n",
            )
        )
    )
    agent = AgentServer(deliver, cfg, tmp_path)

    def send(source: str = "", helo: str = ""):
        req = request_for(queue_message(cfg, ["u@example.com"]), "[127.0.0.1]")
        if source:
            req.attrs["source_address"] = source
        if helo:
            req.attrs["helo_name"] = helo
        return agent.send(req)

    try:
        yield send, handler
    finally:
        agent.stop()
        ctl.stop()


def test_request_source_binds_the_connection_and_names_helo(recording_agent):
    send, handler = recording_agent
    first = send("127.0.0.2", "mail2.example.com")
    second = send("127.0.0.3", "mail3.example.com")
    assert [(addr, helo) for addr, _, helo in handler.peers] == [
        ("127.0.0.2", "mail2.example.com"),
        ("127.0.0.3", "mail3.example.com"),
    ]
    assert [s.action for s in first.statuses + second.statuses] == ["relayed", "relayed"]
    assert first.statuses[0].source == "127.0.0.2"
    assert second.statuses[0].source == "127.0.0.3"


def test_request_without_source_uses_the_defaults(recording_agent):
    send, handler = recording_agent
    result = send()
    assert [(addr, helo) for addr, _, helo in handler.peers] == [("127.0.0.1", "default.example")]
    assert result.statuses[0].source == "127.0.0.1"


def test_cached_session_is_not_reused_across_sources(recording_agent):
    send, handler = recording_agent
    send("127.0.0.2", "mail2.example.com")
    send("127.0.0.3", "mail3.example.com")
    send("127.0.0.2", "other.example.com")  # same address, another name: its own session
    send()  # no source: never one of theirs
    send("127.0.0.2", "mail2.example.com")  # the first session again
    send("127.0.0.3", "mail3.example.com")
    conns = [(addr, port) for addr, port, _ in handler.peers]
    assert len(set(conns[:4])) == 4
    assert conns[4] == conns[0]
    assert conns[5] == conns[1]
    assert [helo for *_, helo in handler.peers][2:4] == ["other.example.com", "default.example"]


def test_with_source_is_memoized_and_keeps_the_rest(tmp_path):
    cfg = load_config(str(make_instance(tmp_path, "smtp_helo_name = default.example\n")))
    st = Settings.of(cfg)
    assert st.with_source("", "") is st
    bound = st.with_source("127.0.0.2", "")
    assert bound is st.with_source("127.0.0.2", "")
    assert (bound.bind_address, bound.bind_address6, bound.helo_name, bound.source) == (
        "127.0.0.2",
        "127.0.0.2",
        "default.example",
        "127.0.0.2",
    )
    assert bound.connect_timeout == st.connect_timeout


def test_shared_cache_key_names_the_source():
    assert _scache_key(_cache_key(False, "Example.COM", ("", ""))) == "smtp:example.com"
    key = _cache_key(False, "example.com", ("127.0.0.2", "m2.example"))
    assert _scache_key(key) == "smtp:example.com|127.0.0.2|m2.example"
