"""check_policy_service with a real policy server: Debian's policyd-spf (postfix-policyd-spf-python).

policyd-spf speaks the policy protocol on stdin/stdout, as Postfix's spawn(8) runs it;
here a small bridge accepts on 127.0.0.1 and starts one policyd-spf per connection with
the socket as its stdin and stdout. It resolves through the system resolver,
which the bridge points at tests/support/dns_server.py before policyd-spf starts
(pyspf's pydns or dnspython, whichever it uses: MTA_DNS_SERVER is ours, not its).
"""

from __future__ import annotations

import asyncio
import smtplib
import socket
import subprocess
import threading

import pytest

from mta.config import load_config
from mta.maps import clear_cache
from mta.smtpd.checks import SessionState, SmtpdChecks
from tests.support.dns_server import DnsServer
from tests.support.instance import SmtpdThread, make_instance
from tests.support.policyd_spf import SYSTEM_PYTHON, WRAPPER, conf, unusable

pytestmark = [pytest.mark.interop, pytest.mark.timeout(120)]

ZONE = {"spf.example": {"TXT": ['"v=spf1 ip4:127.0.0.1 -all"']}}
CONF = conf(temperror_defer=False)


pytestmark.append(pytest.mark.skipif(unusable() is not None, reason=str(unusable())))


class SpawnBridge:
    """Accept on 127.0.0.1; run one policyd-spf per connection on that socket."""

    def __init__(self, dns_host: str, dns_port: int, conf_path: str) -> None:
        self.argv = [SYSTEM_PYTHON, "-c", WRAPPER, dns_host, str(dns_port), conf_path]
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.children: list[subprocess.Popen] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> SpawnBridge:
        self.thread.start()
        return self

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                self.children.append(
                    subprocess.Popen(self.argv, stdin=conn, stdout=conn, stderr=subprocess.DEVNULL)
                )

    def __exit__(self, *exc) -> None:
        self.sock.close()
        for child in self.children:
            child.kill()
            child.wait(10)


@pytest.fixture
def spf_policy(tmp_path):
    conf = tmp_path / "policyd-spf.conf"
    conf.write_text(CONF)
    with DnsServer(ZONE) as dns:
        host, port = dns.nameserver.rsplit(":", 1)
        with SpawnBridge(host, int(port), str(conf)) as bridge:
            yield f"inet:127.0.0.1:{bridge.port}", bridge


def make_checks(tmp_path, service: str) -> SmtpdChecks:
    conf = tmp_path / "conf"
    conf.mkdir(exist_ok=True)
    (conf / "main.cf").write_text(
        f"queue_directory = {tmp_path}/queue\n"
        "myhostname = mx.test.example\nmydomain = test.example\nmynetworks =\n"
        "smtpd_policy_service_timeout = 30s\n"
        f"smtpd_recipient_restrictions = check_policy_service {service}, permit\n"
        "smtpd_relay_restrictions = reject_unauth_destination\n"
        "local_recipient_maps =\n"
    )
    clear_cache()
    return SmtpdChecks(load_config(str(conf)))


def rcpt_state(addr: str) -> SessionState:
    return SessionState(
        client_addr=addr,
        client_name="unknown",
        client_port=40000,
        reverse_name="unknown",
        helo_name="client.example",
        protocol="ESMTP",
        esmtp=True,
        sender="a@spf.example",
        recipient="user@mx.test.example",
        instance=f"spf.{addr}",
    )


def test_spf_pass_prepends_received_spf(tmp_path, spf_policy):
    service, bridge = spf_policy
    checks = make_checks(tmp_path, service)
    st = rcpt_state("127.0.0.1")
    assert asyncio.run(checks.recipient(st)) is None
    (header,) = [value for kind, value in st.actions if kind == "prepend"]
    assert header.startswith("Received-SPF: Pass (mailfrom) identity=mailfrom;")
    assert "client-ip=127.0.0.1" in header


def test_spf_fail_rejects(tmp_path, spf_policy):
    service, bridge = spf_policy
    checks = make_checks(tmp_path, service)

    async def both():
        ok = await checks.recipient(rcpt_state("127.0.0.1"))
        bad = await checks.recipient(rcpt_state("192.0.2.5"))
        return ok, bad

    ok, bad = asyncio.run(both())
    assert ok is None
    assert bad.reply.startswith(
        "550 5.7.23 <user@mx.test.example>: Recipient address rejected: "
        "Message rejected due to: SPF fail - not authorized."
    )
    assert len(bridge.children) == 1  # one policyd-spf served both requests


def test_spf_fail_reaches_the_smtp_client(tmp_path, spf_policy):
    service, _ = spf_policy
    cdir = make_instance(
        tmp_path,
        "mynetworks =\nsmtpd_policy_service_timeout = 30s\n"
        f"smtpd_recipient_restrictions = check_policy_service {service}, permit\n"
        "smtpd_relay_restrictions = reject_unauth_destination\n",
    )
    smtpd = SmtpdThread(cdir)
    try:
        with smtplib.SMTP("127.0.0.1", smtpd.port, source_address=("127.0.0.2", 0)) as s:
            s.ehlo("client.example")
            s.mail("a@spf.example")
            code, text = s.rcpt("user@mx.test.example")
        assert code == 550
        assert text.startswith(b"5.7.23 <user@mx.test.example>: Recipient address rejected:")
        with smtplib.SMTP("127.0.0.1", smtpd.port) as s:
            s.ehlo("client.example")
            s.mail("a@spf.example")
            assert s.rcpt("user@mx.test.example")[0] == 250
    finally:
        smtpd.close()
