"""DANE under the real master: mta's smtp client, a loopback DNS server that plays a
validating resolver (the AD bit), and a real Postfix smtpd offering STARTTLS with a
certificate the test made."""

import smtplib

import pytest

from tests.support import postfix
from tests.support.certs import make_cert, tlsa, write_pair
from tests.support.dns_server import DnsServer
from tests.support.running import free_port, relay_system, wait_for
from tests.unit.smtp.peers import sink

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(not postfix.available(), reason="needs root and Postfix"),
]

MX = "mx.dane.example"
SERVER = make_cert(MX)  # what Postfix presents
STRANGER = make_cert(MX)  # what a wrong TLSA record names


@pytest.fixture(scope="module")
def peer():
    """A Postfix smtpd with STARTTLS (it takes the mail and keeps it: defer_transports)."""
    pf = postfix.PostfixInstance(
        free_port(),
        "smtpd_tls_security_level = may\nsmtpd_tls_loglevel = 1\ndefer_transports = smtp\n",
    )
    cert, key = write_pair(SERVER, pf.top, "server")  # where Postfix's processes reach it
    with open(pf.etc / "main.cf", "a") as f:
        f.write(f"smtpd_tls_cert_file = {cert}\nsmtpd_tls_key_file = {key}\n")
    with open(pf.etc / "master.cf", "a") as f:
        f.write("tlsmgr unix - - n 1000? 1 tlsmgr\n")  # Postfix's smtpd needs it for TLS
    pf.start()
    yield pf
    pf.stop()


@pytest.fixture(scope="module")
def dns():
    with DnsServer({"dane.example": {"MX": [f"10 {MX}."]}, MX: {"A": ["127.0.0.1"]}}) as srv:
        yield srv


def send_through_mta(tmp_path, dns, port: int, level: str, secure=True) -> tuple[str, str]:
    """One message for u@dane.example through mta (smtp client at level, peer on port);
    (mta's maillog once the recipient has a status, `mta queue -p`)."""
    dns.secure = secure
    inst = relay_system(
        tmp_path,
        "smtp unix - - n - - smtp\n",
        smtp_tls_security_level=level,
        smtp_dns_support_level="dnssec",
        smtp_tcp_port=str(port),
    )
    inst.env["MTA_DNS_SERVER"] = dns.nameserver
    try:
        r = inst.mta("start")
        assert r.returncode == 0, r.stderr
        with smtplib.SMTP("127.0.0.1", inst.port, timeout=10) as s:
            s.sendmail("sender@ok.example", ["u@dane.example"], b"Subject: dane\r\n\r\nbody\r\n")
        text = inst.wait_log(r"to=<u@dane\.example>.*status=(sent|deferred)", 30)
        listing = inst.mta("queue", "-p").stdout
    finally:
        inst.stop()
    return text, listing


def tlsa_at(dns, port: int, *records: str) -> None:
    dns.update({f"_{port}._tcp.{MX}": {"TLSA": list(records)} if records else {"TXT": ["x"]}})


def peer_saw_tls(pf) -> bool:
    return "TLS connection established from" in (pf.top / "maillog").read_text()


def test_matching_dane_ee_record_delivers_verified(tmp_path, peer, dns):
    tlsa_at(dns, peer.port, tlsa(SERVER, 3, 1, 1))
    text, _ = send_through_mta(tmp_path, dns, peer.port, "dane")
    assert "status=sent" in text
    assert f"Verified TLS connection established to {MX}[127.0.0.1]:{peer.port}: TLSv1" in text
    assert wait_for(lambda: peer_saw_tls(peer), 10)


@pytest.mark.parametrize("level", ["dane", "dane-only"])
def test_record_that_does_not_match_defers(tmp_path, peer, dns, level):
    tlsa_at(dns, peer.port, tlsa(STRANGER, 3, 1, 1))
    text, listing = send_through_mta(tmp_path, dns, peer.port, level)
    assert "status=deferred (Server certificate not verified)" in text
    assert "dsn=4.7.5" in text
    assert "(Server certificate not verified)" in listing
    assert "Verified TLS" not in text


def test_no_tlsa_records_at_dane_is_opportunistic(tmp_path, peer, dns):
    tlsa_at(dns, peer.port)  # the name exists, no TLSA record
    text, _ = send_through_mta(tmp_path, dns, peer.port, "dane")
    assert "status=sent" in text
    assert "Verified TLS" not in text


def test_insecure_answers_make_dane_opportunistic(tmp_path, peer, dns):
    tlsa_at(dns, peer.port, tlsa(STRANGER, 3, 1, 1))  # would defer, were it trusted
    text, _ = send_through_mta(tmp_path, dns, peer.port, "dane", secure=False)
    assert "status=sent" in text


def test_insecure_answers_defer_dane_only(tmp_path, peer, dns):
    tlsa_at(dns, peer.port, tlsa(SERVER, 3, 1, 1))
    text, listing = send_through_mta(tmp_path, dns, peer.port, "dane-only", secure=False)
    assert "status=deferred (non DNSSEC destination)" in text
    assert "(non DNSSEC destination)" in listing


def test_server_that_stops_offering_starttls_defers(tmp_path, dns):
    ctl, handler = sink()  # no STARTTLS
    try:
        tlsa_at(dns, ctl.port, tlsa(SERVER, 3, 1, 1))
        text, _ = send_through_mta(tmp_path, dns, ctl.port, "dane")
    finally:
        ctl.stop()
    assert f"status=deferred (TLS is required, but was not offered by host {MX}" in text
    assert handler.messages == []
