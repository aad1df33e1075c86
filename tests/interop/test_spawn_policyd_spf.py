"""SMTPD_POLICY_README's policyd-spf set-up under the real master: spawn(8) runs Debian's
policyd-spf (postfix-policyd-spf-python) per connection, smtpd asks it with
check_policy_service unix:private/policyd-spf, SPF records come from
tests/support/dns_server.py.

policyd-spf resolves through pydns (or dnspython) configured from /etc/resolv.conf; as in
test_smtpd_policy_spf.py, a small wrapper points that library at the loopback server before
policyd-spf's own main() runs. Here the wrapper is a file that spawn's argv= names.
"""

from __future__ import annotations

import os
import shutil
import smtplib
import socket
import tempfile
from pathlib import Path

import pytest

from tests.support.dns_server import DnsServer
from tests.support.policyd_spf import SYSTEM_PYTHON, WRAPPER, conf, unusable
from tests.support.running import Instance, free_port, wait_for

pytestmark = [pytest.mark.interop, pytest.mark.timeout(180)]

ZONE = {
    "spf.example": {"TXT": ['"v=spf1 ip4:127.0.0.1 -all"']},
    "soft.example": {"TXT": ['"v=spf1 ip4:127.0.0.1 ~all"']},
    "temp.example": "TIMEOUT",  # the name server never answers
}
CONF = conf(temperror_defer=True, lookup_time=3)


pytestmark.append(pytest.mark.skipif(unusable() is not None, reason=str(unusable())))

USER = "nobody" if os.geteuid() == 0 else None


@pytest.fixture(scope="module")
def mail_system(tmp_path_factory):
    """smtpd, cleanup and the policyd-spf spawn service, as SMTPD_POLICY_README writes them."""
    world = Path(tempfile.mkdtemp(prefix="mta-spawn-spf-"))
    world.chmod(0o755)  # user nobody reads the wrapper and the policyd-spf configuration
    (world / "policyd-spf.conf").write_text(CONF)
    (world / "spf_wrapper.py").write_text(WRAPPER)
    with DnsServer(ZONE) as dns:
        host, dns_port = dns.nameserver.rsplit(":", 1)
        port = free_port()
        user = f"user={USER}" if USER else f"user={os.environ.get('USER', 'root')}"
        inst = Instance(
            tmp_path_factory.mktemp("spf"),
            f"127.0.0.1:{port} inet n - n - - smtpd\n"
            "cleanup unix n - n - 0 cleanup\n"
            "policyd-spf  unix  -  n  n  -  0  spawn\n"
            f"    {user} argv={SYSTEM_PYTHON} {world}/spf_wrapper.py {host} {dns_port} "
            f"{world}/policyd-spf.conf\n",
            {
                "myhostname": "mx.test.example",
                "mydestination": "mx.test.example",
                "mynetworks": "",
                "local_recipient_maps": "",
                "smtpd_peername_lookup": "no",
                "policyd-spf_time_limit": "3600",
                "smtpd_recipient_restrictions": (
                    "reject_unauth_destination, check_policy_service unix:private/policyd-spf"
                ),
            },
        )
        r = inst.mta("start")
        assert r.returncode == 0, r.stderr
        assert wait_for(lambda: _accepts(port), 10), inst.log()
        inst.port = port
        try:
            yield inst
        finally:
            inst.stop()
            shutil.rmtree(world, ignore_errors=True)


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 1).close()
        return True
    except OSError:
        return False


def _session(inst: Instance, source: str, sender: str, data: bytes | None = None):
    """(RCPT reply, queue id or None) of one SMTP transaction from source."""
    with smtplib.SMTP("127.0.0.1", inst.port, timeout=60, source_address=(source, 0)) as s:
        s.ehlo("client.example")
        assert s.mail(sender)[0] == 250
        reply = s.rcpt("user@mx.test.example")
        if reply[0] != 250 or data is None:
            return reply, None
        code, text = s.data(data)
        assert code == 250, text
        return reply, text.decode().rsplit(" ", 1)[-1]


def _queued_headers(inst: Instance, queue_id: str) -> str:
    r = inst.mta("cat", "-h", "-q", queue_id)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_spf_pass_is_queued_with_received_spf(mail_system):
    reply, queue_id = _session(
        mail_system, "127.0.0.1", "a@spf.example", b"Subject: pass\r\n\r\nbody\r\n"
    )
    assert reply[0] == 250
    headers = _queued_headers(mail_system, queue_id)
    (line,) = [h for h in headers.splitlines() if h.startswith("Received-SPF:")]
    assert line.startswith("Received-SPF: Pass (mailfrom) identity=mailfrom;")
    assert "client-ip=127.0.0.1" in line and "envelope-from=a@spf.example;" in line


def test_spf_fail_is_rejected_550_5_7_23(mail_system):
    code, text = _session(mail_system, "127.0.0.2", "a@spf.example")[0]
    assert code == 550
    assert text.startswith(
        b"5.7.23 <user@mx.test.example>: Recipient address rejected: "
        b"Message rejected due to: SPF fail - not authorized."
    )
    mail_system.wait_log(r"NOQUEUE: reject: RCPT from unknown\[127\.0\.0\.2\]: 550 5\.7\.23 ")


def test_spf_softfail_is_accepted_and_marked(mail_system):
    reply, queue_id = _session(
        mail_system, "127.0.0.2", "b@soft.example", b"Subject: soft\r\n\r\nbody\r\n"
    )
    assert reply[0] == 250
    headers = _queued_headers(mail_system, queue_id)
    (line,) = [h for h in headers.splitlines() if h.startswith("Received-SPF:")]
    assert line.startswith("Received-SPF: Softfail (mailfrom) identity=mailfrom;")
    assert "client-ip=127.0.0.2" in line


def test_spf_temperror_defers_450(mail_system):
    code, text = _session(mail_system, "127.0.0.1", "c@temp.example")[0]
    assert code == 450  # policyd-spf answers DEFER_IF_PERMIT
    assert text.startswith(
        b"4.7.24 <user@mx.test.example>: Recipient address rejected: "
        b"Message deferred due to: SPF Temporary Error: DNS Timeout."
    )


def test_policyd_spf_runs_under_spawn_as_the_named_user(mail_system):
    log = mail_system.log()
    assert "fatal" not in log and "problem talking to server" not in log, log
    if USER is None:
        pytest.skip("the user switch needs root")
    pids = mail_system.children("policyd-spf")
    assert pids, "no spawn process for policyd-spf"
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            uid = os.stat(f"/proc/{entry}").st_uid
        except OSError:
            continue
        if any(a.endswith(b"spf_wrapper.py") for a in argv) and argv[0] == SYSTEM_PYTHON.encode():
            found.append(uid)
    assert found and set(found) == {65534}
