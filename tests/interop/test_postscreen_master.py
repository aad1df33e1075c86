"""postscreen under the real master, with POSTSCREEN_README's master.cf lines.

One mail system serves every test: postscreen on the SMTP port, smtpd as a pass
service, dnsblog and the tlsproxy stand-in, a loopback DNS server as the lists.
Each test connects from its own loopback address (127.0.0.N), so the cache of one
test never decides another:

    127.0.0.2   a clean client           127.0.0.6   on the DNS allowlist
    127.0.0.3   a pregreeting client     127.0.0.7   a pipelining client
    127.0.0.4   denied by the cidr table 127.0.0.8   a flood of connections
    127.0.0.5   on the DNS blocklist     127.0.0.9   too many at once
    127.0.0.11  a web client (non-SMTP)  127.0.0.10  the service without deep tests
    127.0.0.12  bare newlines

A second postscreen service (no deep tests) shows the plain hand-off: the client
reads postscreen's "220-" teaser and smtpd's final "220".
"""

from __future__ import annotations

import os
import re
import smtplib
import socket
import time

import pytest

from tests.support.dns_server import DnsServer
from tests.support.running import Instance, free_port, wait_for

pytestmark = [pytest.mark.interop, pytest.mark.timeout(240)]

ZONE = {
    "5.0.0.127.zen.example": {"A": ["127.0.0.2"]},
    "5.0.0.127.bl.example": {"A": ["127.0.0.2"]},
    "6.0.0.127.list.dnswl.example": {"A": ["127.0.10.1"]},
    "7.0.0.127.list.dnswl.example": {"A": ["127.1.0.1"]},  # the filter does not match
}
SITES = "zen.example*3 bl.example*2 list.dnswl.example=127.0.[0..255].[0..255]*-2"
ALL_SERVICES = """\
{port} inet n - n - 1 postscreen
{port2} inet n - n - 1 postscreen
  -o postscreen_pipelining_enable=no
  -o postscreen_non_smtp_command_enable=no
  -o postscreen_bare_newline_enable=no
smtpd pass - - n - - smtpd
dnsblog unix - - n - 0 dnsblog
tlsproxy unix - - n - 0 tlsproxy
qmgr fifo n - n 300 1 qmgr
cleanup unix n - n - 0 cleanup
"""


def _has_loopback_range() -> bool:
    try:
        with socket.socket() as s:
            s.bind(("127.0.0.12", 0))
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def mta_system(tmp_path_factory):
    if not _has_loopback_range():
        pytest.skip("this host cannot bind 127.0.0.2-12")
    top = tmp_path_factory.mktemp("postscreen")
    cidr = top / "postscreen_access.cidr"
    cidr.write_text("127.0.0.4/32 reject\n127.0.0.0/8 dunno\n")
    port, port2 = free_port(), free_port()
    with DnsServer(ZONE) as dns:
        inst = Instance(
            top,
            ALL_SERVICES.format(port=f"127.0.0.1:{port}", port2=f"127.0.0.1:{port2}"),
            {
                "myhostname": "mx.test.example",
                "mydestination": "mx.test.example",
                "mynetworks": "10.99.0.0/16",
                "local_recipient_maps": "",
                "smtpd_peername_lookup": "no",
                "postscreen_access_list": f"permit_mynetworks, cidr:{cidr}",
                "postscreen_blacklist_action": "drop",  # the old name, as many main.cf have
                "postscreen_greet_action": "drop",
                "postscreen_greet_wait": "1s",
                "postscreen_dnsbl_sites": SITES,
                "postscreen_dnsbl_threshold": "3",
                "postscreen_dnsbl_action": "enforce",
                "postscreen_dnsbl_whitelist_threshold": "-1",
                "postscreen_dnsbl_timeout": "5s",
                "postscreen_pipelining_enable": "yes",
                "postscreen_non_smtp_command_enable": "yes",
                "postscreen_bare_newline_enable": "yes",
                "postscreen_client_connection_count_limit": "5",
            },
        )
        inst.env["MTA_DNS_SERVER"] = dns.nameserver
        inst.port, inst.port2 = port, port2
        r = inst.mta("check")
        assert r.returncode == 0, r.stdout + r.stderr
        r = inst.mta("start")
        assert r.returncode == 0, r.stderr
        try:
            yield inst
        finally:
            inst.stop()


def _smtp(inst, source: str, port: int | None = None) -> smtplib.SMTP:
    s = smtplib.SMTP(timeout=30, source_address=(source, 0))
    code, banner = s.connect("127.0.0.1", port or inst.port)
    assert code == 220, banner
    return s


def _raw(inst, source: str) -> socket.socket:
    sock = socket.socket()
    sock.settimeout(30)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", inst.port))
    return sock


def _read_all(sock: socket.socket) -> bytes:
    out = b""
    while True:
        try:
            data = sock.recv(4096)
        except (ConnectionResetError, TimeoutError):
            break
        if not data:
            break
        out += data
    return out


def _send_mail(s: smtplib.SMTP, subject: str) -> None:
    s.sendmail("a@sender.example", ["user@mx.test.example"], f"Subject: {subject}\r\n\r\nhi\r\n")


def test_clean_client_gets_450_then_passes_and_smtpd_queues_its_mail(mta_system):
    inst = mta_system
    with _smtp(inst, "127.0.0.2") as s:
        assert s.ehlo("client.example")[0] == 250
        assert "pipelining" not in s.esmtp_features  # postscreen does not announce it
        assert "starttls" not in s.esmtp_features  # no tlsproxy behind postscreen
        assert s.mail("a@sender.example")[0] == 250
        assert s.rcpt("user@mx.test.example") == (450, b"4.3.2 Service currently unavailable")
    text = inst.wait_log(r"PASS NEW \[127\.0\.0\.2\]:\d+")
    assert re.search(
        r"NOQUEUE: reject: RCPT from \[127\.0\.0\.2\]:\d+: 450 4\.3\.2 Service currently "
        r"unavailable; from=<a@sender\.example>, to=<user@mx\.test\.example>, proto=ESMTP, "
        r"helo=<client\.example>",
        text,
    )
    with _smtp(inst, "127.0.0.2") as s:
        assert "pipelining" in (s.ehlo("client.example")[1].decode().lower())  # smtpd now
        _send_mail(s, "through postscreen")
    text = inst.wait_log(r"PASS OLD \[127\.0\.0\.2\]:\d+")
    text = inst.wait_log(r"client=unknown\[127\.0\.0\.2\]")  # the real address, through the fd
    assert re.search(r"CONNECT from \[127\.0\.0\.2\]:\d+ to \[127\.0\.0\.1\]:\d+", text)
    queue_id = re.search(r"(\w+): client=unknown\[127\.0\.0\.2\]", text).group(1)
    inst.wait_log(rf"{queue_id}: to=<user@mx\.test\.example>.*status=deferred")
    r = inst.mta("cat", "-h", "-q", queue_id)
    headers = r.stdout
    assert r.returncode == 0, r.stderr
    assert re.search(r"Received: from client\.example \(unknown \[127\.0\.0\.2\]\)", headers)
    assert "DISCONNECT [127.0.0.2]" in text  # the first session ended in postscreen


def _greeting(inst, source: str, port: int) -> bytes:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30, source_address=(source, 0))
    greeting = b""
    while not re.search(rb"(^|\n)220 [^\r]*\r\n", greeting):
        data = sock.recv(4096)
        assert data, greeting
        greeting += data
    sock.sendall(b"QUIT\r\n")
    _read_all(sock)
    sock.close()
    return greeting


def test_plain_hand_off_sends_teaser_then_smtpd_greeting(mta_system):
    inst = mta_system
    # a new client: postscreen's "220-" teaser, the greet wait, then smtpd's own 220
    assert _greeting(inst, "127.0.0.10", inst.port2) == (
        b"220-mx.test.example ESMTP mta\r\n220 mx.test.example ESMTP mta\r\n"
    )
    text = inst.wait_log(r"PASS NEW \[127\.0\.0\.10\]:\d+")
    # a client that passed goes straight to smtpd: only smtpd's 220 line
    assert _greeting(inst, "127.0.0.10", inst.port2) == b"220 mx.test.example ESMTP mta\r\n"
    with _smtp(inst, "127.0.0.10", inst.port2) as s:
        _send_mail(s, "plain hand-off")
    text = inst.wait_log(r"client=unknown\[127\.0\.0\.10\]")
    assert len(re.findall(r"PASS OLD \[127\.0\.0\.10\]", text)) == 2


def test_pregreeting_client_is_dropped_and_logged(mta_system):
    inst = mta_system
    sock = _raw(inst, "127.0.0.3")
    teaser = sock.recv(4096)
    assert teaser.startswith(b"220-mx.test.example")
    sock.sendall(b"EHLO zombie.example\r\n")  # before the final 220
    reply = _read_all(sock)
    sock.close()
    assert b"521 5.5.1 Protocol error" in reply
    text = inst.wait_log(r"PREGREET 21 after [0-9.]+ from \[127\.0\.0\.3\]:\d+: EHLO zombie")
    assert r"EHLO zombie.example\r\n" in text
    assert "PASS NEW [127.0.0.3]" not in text


def test_denied_client_of_the_cidr_table_is_dropped(mta_system):
    inst = mta_system
    sock = _raw(inst, "127.0.0.4")
    reply = _read_all(sock)
    sock.close()
    assert reply.startswith(b"521 5.3.2 ")
    inst.wait_log(r"DENYLISTED \[127\.0\.0\.4\]:\d+")


def test_dnsbl_listed_client_is_refused_at_rcpt(mta_system):
    inst = mta_system
    with _smtp(inst, "127.0.0.5") as s:
        assert s.ehlo("spam.example")[0] == 250
        assert s.mail("x@spam.example")[0] == 250
        code, msg = s.rcpt("user@mx.test.example")
    assert (code, msg) == (
        550,
        b"5.7.1 Service unavailable; client [127.0.0.5] blocked using zen.example",
    )
    text = inst.wait_log(r"NOQUEUE: reject: RCPT from \[127\.0\.0\.5\]")
    assert re.search(r"DNSBL rank 5 for \[127\.0\.0\.5\]:\d+", text)
    assert re.search(
        r"NOQUEUE: reject: RCPT from \[127\.0\.0\.5\]:\d+: 550 5\.7\.1 Service unavailable; "
        r"client \[127\.0\.0\.5\] blocked using zen\.example; from=<x@spam\.example>, "
        r"to=<user@mx\.test\.example>, proto=ESMTP, helo=<spam\.example>",
        text,
    )
    assert "PASS NEW [127.0.0.5]" not in text


def test_dnswl_allowlisted_client_passes_at_once(mta_system):
    inst = mta_system
    with _smtp(inst, "127.0.0.6") as s:
        assert "pipelining" in s.ehlo("good.example")[1].decode().lower()  # smtpd at once
        _send_mail(s, "allowlisted")
    text = inst.wait_log(r"client=unknown\[127\.0\.0\.6\]")
    assert re.search(r"PASS NEW \[127\.0\.0\.6\]:\d+", text)
    assert "NOQUEUE: reject: RCPT from [127.0.0.6]" not in text


def test_pipelining_client_is_caught_and_refused(mta_system):
    inst = mta_system
    sock = _raw(inst, "127.0.0.7")
    greeting = b""
    while not re.search(rb"(^|\n)220 [^\r]*\r\n", greeting):
        greeting += sock.recv(4096)
    sock.sendall(
        b"EHLO bot.example\r\nMAIL FROM:<a@bot.example>\r\nRCPT TO:<u@mx.test.example>\r\n"
    )
    replies = b""
    while b"\r\n550 " not in replies and not replies.startswith(b"550 "):
        data = sock.recv(4096)
        assert data, replies
        replies += data
    sock.sendall(b"QUIT\r\n")
    sock.close()
    assert b"550 5.5.1 Protocol error" in replies
    text = inst.wait_log(r"COMMAND PIPELINING from \[127\.0\.0\.7\]:\d+ after EHLO: MAIL FROM")
    assert "PASS NEW [127.0.0.7]" not in text


def _after_greeting(inst, source: str) -> socket.socket:
    sock = _raw(inst, source)
    greeting = b""
    while not re.search(rb"(^|\n)220 [^\r]*\r\n", greeting):
        data = sock.recv(4096)
        assert data, greeting
        greeting += data
    return sock


def test_non_smtp_command_is_dropped(mta_system):
    inst = mta_system
    sock = _after_greeting(inst, "127.0.0.11")
    sock.sendall(b"GET / HTTP/1.0\r\n")
    reply = _read_all(sock)
    sock.close()
    assert reply == b"521 5.5.1 Protocol error\r\n"  # the stock action: drop
    inst.wait_log(r"NON-SMTP COMMAND from \[127\.0\.0\.11\]:\d+ after CONNECT: GET / HTTP/1\.0")


def test_bare_newline_is_logged_and_ignored_by_default(mta_system):
    inst = mta_system
    sock = _after_greeting(inst, "127.0.0.12")
    sock.sendall(b"EHLO lf.example\n")
    ehlo = b""
    while not re.search(rb"(^|\n)250 [^\r]*\r\n", ehlo):
        ehlo += sock.recv(4096)
    sock.sendall(b"QUIT\r\n")
    assert _read_all(sock) == b"221 2.0.0 Bye\r\n"
    sock.close()
    inst.wait_log(r"BARE NEWLINE from \[127\.0\.0\.12\]:\d+ after CONNECT")
    inst.wait_log(r"DISCONNECT \[127\.0\.0\.12\]")


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _flood(inst, n: int) -> None:
    for _ in range(n):
        sock = socket.socket()
        sock.bind(("127.0.0.8", 0))
        sock.connect(("127.0.0.1", inst.port))
        sock.close()


def test_a_thousand_quick_connections_keep_memory_bounded(mta_system):
    inst = mta_system
    _flood(inst, 200)  # warm up
    (pid,) = wait_for(lambda: inst.children(f"127.0.0.1:{inst.port}"), 10)
    wait_for(lambda: inst.log().count("HANGUP after") >= 150, 30)
    before = _rss_kb(pid)
    _flood(inst, 1000)
    wait_for(lambda: inst.log().count("[127.0.0.8]") >= 2400, 60)
    time.sleep(1)
    after = _rss_kb(pid)
    assert after - before < 10_000, (before, after)
    # a client that sends 10 MB before the greeting: at most 1 KiB is looked at
    sock = _raw(inst, "127.0.0.8")
    try:
        sock.sendall(b"X" * (10 << 20))
    except (BrokenPipeError, ConnectionResetError):
        pass
    sock.close()
    inst.wait_log(r"PREGREET 1024 after [0-9.]+ from \[127\.0\.0\.8\]")
    assert _rss_kb(pid) - before < 10_000


def test_too_many_connections_from_one_client_get_421(mta_system):
    inst = mta_system
    socks = []
    for _ in range(5):
        socks.append(_raw(inst, "127.0.0.9"))
    extra = _raw(inst, "127.0.0.9")
    reply = _read_all(extra)
    extra.close()
    for sock in socks:
        sock.close()
    assert reply.startswith(b"421 4.7.0 Error: too many connections from 127.0.0.9")
    inst.wait_log(r"NOQUEUE: reject: CONNECT from \[127\.0\.0\.9\]:\d+: too many connections")


def test_tlsproxy_stand_in_refuses_with_one_line(mta_system):
    inst = mta_system
    path = os.path.join(inst.queue, "private", "tlsproxy")
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(path)
        s.sendall(b"request\0starttls\0\0")
        s.settimeout(30)
        assert _read_all(s) == b""
    inst.wait_log(r"tlsproxy.*TLS proxy service is not available in mta; request refused")
