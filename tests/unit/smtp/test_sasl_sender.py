"""smtp_sender_dependent_authentication: the SASL credentials chosen by envelope sender,
against aiosmtpd as an authenticated smarthost (one account per sender)."""

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import AuthResult, LoginPassword

from mta.config import load_config
from mta.smtp import deliver, deliver_lmtp, session_cache
from tests.support.agent import queue_message, request_for, run_agent
from tests.support.instance import make_instance
from tests.unit.smtp.peers import (
    AgentServer,
    LmtpController,
    LmtpHandler,
    SinkHandler,
    free_port,
    sink,
)

ACCOUNTS = {"alice": "pw-alice", "bob": "pw-bob", "relay": "pw-relay"}
TABLE = (
    "alice@example.org alice:pw-alice\n"
    "@bob.example bob:pw-bob\n"
    "[127.0.0.1] relay:pw-relay\n"
    "127.0.0.1 relay:pw-relay\n"
)


class Accounts:
    """Logs every login and, for each message, (sender, the user it came authenticated as)."""

    def __init__(self, handler) -> None:
        self.handler = handler
        self.logins: list[str] = []
        self.mail: list[tuple[str, str]] = []
        inner = handler.handle_DATA

        async def handle_data(server, session, envelope):
            user = session.auth_data.login.decode() if session.authenticated else ""
            self.mail.append((envelope.mail_from, user))
            return await inner(server, session, envelope)

        handler.handle_DATA = handle_data

    def authenticator(self, server, session, envelope, mechanism, auth_data):
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user = auth_data.login.decode()
        self.logins.append(user)
        ok = ACCOUNTS.get(user) == auth_data.password.decode()
        return AuthResult(success=ok, handled=False, auth_data=auth_data)


def smarthost():
    accounts = Accounts(SinkHandler())
    ctl, _ = sink(accounts.handler, authenticator=accounts.authenticator, auth_require_tls=False)
    return ctl, accounts


def config(tmp_path, port, extra="", table=TABLE, prefix="smtp"):
    (tmp_path / "sasl_passwd").write_text(table)
    return load_config(
        str(
            make_instance(
                tmp_path,
                f"{prefix}_tcp_port = {port}\n"
                f"{prefix}_sasl_auth_enable = yes\n"
                f"{prefix}_sasl_password_maps = texthash:{tmp_path / 'sasl_passwd'}\n"
                f"{prefix}_sasl_security_options = noanonymous\n"
                "recipient_delimiter = +\n" + extra,
            )
        )
    )


def send_from(tmp_path, senders, extra="", table=TABLE):
    """One message per sender through one agent process; the smarthost's Accounts."""
    ctl, accounts = smarthost()
    cfg = config(tmp_path, ctl.port, extra, table)
    agent = AgentServer(deliver, cfg, tmp_path)
    results = []
    try:
        for i, sender in enumerate(senders):
            msg = queue_message(cfg, [f"u{i}@example.com"], sender=sender)
            results.append(agent.send(request_for(msg, "[127.0.0.1]")))
    finally:
        agent.stop()
        ctl.stop()
    return accounts, results


SENDER_AUTH = "smtp_sender_dependent_authentication = yes\n"


def test_each_sender_logs_in_with_its_own_account(tmp_path):
    senders = ["alice@example.org", "x@bob.example", "other@example.net"]
    accounts, results = send_from(tmp_path, senders, SENDER_AUTH)
    assert [s.action for r in results for s in r.statuses] == ["relayed"] * 3
    assert accounts.mail == [
        ("alice@example.org", "alice"),  # the full address
        ("x@bob.example", "bob"),  # @domain
        ("other@example.net", "relay"),  # no sender entry: the next hop's
    ]


def test_the_sender_extension_is_dropped_and_case_ignored(tmp_path):
    accounts, _ = send_from(tmp_path, ["Alice+news@Example.ORG"], SENDER_AUTH)
    assert accounts.mail == [("Alice+news@Example.ORG", "alice")]


def test_the_null_sender_uses_the_next_hop_entry(tmp_path):
    accounts, _ = send_from(tmp_path, [""], SENDER_AUTH)
    assert accounts.mail == [("<>", "relay")]


def test_without_the_parameter_the_sender_is_not_looked_up(tmp_path):
    accounts, _ = send_from(tmp_path, ["alice@example.org", "x@bob.example"])
    assert accounts.mail == [("alice@example.org", "relay"), ("x@bob.example", "relay")]


def test_no_session_is_kept_for_another_sender(tmp_path):
    # the first sender has no credentials at all (no next-hop entry either): its
    # session goes without AUTH; kept and reused, it would carry bob's mail
    # unauthenticated. With sender-dependent authentication nothing is cached.
    table = "@bob.example bob:pw-bob\n"
    extra = SENDER_AUTH + "smtp_connection_cache_destinations = [127.0.0.1]\n"
    senders = ["nobody@example.net", "x@bob.example", "y@bob.example"]
    accounts, results = send_from(tmp_path, senders, extra, table)
    assert [s.action for r in results for s in r.statuses] == ["relayed"] * 3
    assert accounts.mail == [("nobody@example.net", ""), ("x@bob.example", "bob")] + [
        ("y@bob.example", "bob")
    ]
    assert accounts.logins == ["bob", "bob"]  # one login per message
    assert session_cache.count() == 0


def test_plain_sessions_are_still_cached_without_the_parameter(tmp_path):
    # the same set-up without sender-dependent authentication: the plain session is
    # kept (the control for the test above)
    extra = "smtp_connection_cache_destinations = [127.0.0.1]\n"
    accounts, _ = send_from(tmp_path, ["a@example.net", "b@example.net"], extra, "x y:z\n")
    assert accounts.mail == [("a@example.net", ""), ("b@example.net", "")]
    assert session_cache.count() == 1


def test_lmtp_reads_lmtp_sender_dependent_authentication(tmp_path):
    accounts = Accounts(LmtpHandler())

    class Ctl(LmtpController):
        def factory(self):
            return LMTP(self.handler, authenticator=accounts.authenticator, auth_require_tls=False)

    ctl = Ctl(accounts.handler, hostname="127.0.0.1", port=free_port())
    ctl.start()
    try:
        cfg = config(
            tmp_path, ctl.port, "lmtp_sender_dependent_authentication = yes\n", prefix="lmtp"
        )
        msg = queue_message(cfg, ["u@example.com"], sender="alice@example.org")
        result = run_agent(deliver_lmtp, cfg, request_for(msg, "inet:127.0.0.1"), tmp_path)
    finally:
        ctl.stop()
    assert [s.action for s in result.statuses] == ["delivered"]
    assert accounts.mail == [("alice@example.org", "alice")]
