"""smtp_tls_connection_reuse (and the policy table's connection_reuse=): whether a
TLS-encrypted connection goes into the connection cache, against aiosmtpd with STARTTLS."""

from __future__ import annotations

import pytest
from aiosmtpd.controller import Controller

from mta.config import load_config
from mta.smtp import deliver, session_cache
from tests.support.agent import queue_message, request_for
from tests.support.instance import make_instance
from tests.support.tls_certs import TestCA
from tests.unit.smtp.peers import AgentServer, SinkHandler, free_port


@pytest.fixture(scope="module")
def server_cert(tmp_path_factory):
    return TestCA(tmp_path_factory.mktemp("ca"), "Reuse CA").issue("sink", ["sink.example.test"])


class PeerRecorder(SinkHandler):
    """Notes, per message, the client's port (one per connection) and whether it was TLS."""

    def __init__(self):
        super().__init__()
        self.peers: list[tuple[int, bool]] = []

    async def handle_DATA(self, server, session, envelope):
        self.peers.append((session.peer[1], session.ssl is not None))
        return await super().handle_DATA(server, session, envelope)


def two_messages(tmp_path, server_cert, main_cf, policy=""):
    handler = PeerRecorder()
    ctl = Controller(
        handler, hostname="127.0.0.1", port=free_port(), tls_context=TestCA.context(*server_cert)
    )
    ctl.start()
    if policy:
        (tmp_path / "tls_policy").write_text(policy)
        main_cf += f"smtp_tls_policy_maps = texthash:{tmp_path / 'tls_policy'}\n"
    cfg = load_config(
        str(
            make_instance(
                tmp_path,
                f"smtp_tcp_port = {ctl.port}\nsmtp_tls_security_level = encrypt\n"
                "smtp_connection_cache_destinations = [127.0.0.1]\n" + main_cf,
            )
        )
    )
    agent = AgentServer(deliver, cfg, tmp_path)
    try:
        for i in range(2):
            msg = queue_message(cfg, [f"u{i}@example.com"])
            (st,) = agent.send(request_for(msg, "[127.0.0.1]")).statuses
            assert st.action == "relayed"
    finally:
        agent.stop()
        ctl.stop()
    assert all(tls for _, tls in handler.peers)
    return len({port for port, _ in handler.peers})  # connections used


def test_by_default_a_tls_connection_is_not_kept(tmp_path, server_cert):
    assert two_messages(tmp_path, server_cert, "") == 2
    assert session_cache.count() == 0


def test_connection_reuse_keeps_the_tls_connection(tmp_path, server_cert):
    assert two_messages(tmp_path, server_cert, "smtp_tls_connection_reuse = yes\n") == 1
    assert session_cache.count() == 1


def test_the_policy_table_turns_reuse_on_for_its_destination(tmp_path, server_cert):
    policy = "[127.0.0.1] encrypt connection_reuse=yes\n"
    assert two_messages(tmp_path, server_cert, "", policy) == 1


def test_the_policy_table_turns_reuse_off_for_its_destination(tmp_path, server_cert):
    policy = "[127.0.0.1] encrypt connection_reuse=no\n"
    assert two_messages(tmp_path, server_cert, "smtp_tls_connection_reuse = yes\n", policy) == 2


def test_lmtp_reads_lmtp_tls_connection_reuse(tmp_path):
    from mta.smtp.tls_policy import ClientTls

    cfg = load_config(str(make_instance(tmp_path, "lmtp_tls_connection_reuse = yes\n")))
    assert ClientTls.of(cfg, lmtp=True).make_policy("encrypt").connection_reuse
    assert not ClientTls.of(cfg, lmtp=False).make_policy("encrypt").connection_reuse
