"""mta under its real master relays to a real Postfix smtpd with TLS, at every client level.

The test makes a CA and server certificates; Postfix presents one of
them (or offers no STARTTLS at all); the MX names come from a loopback
DNS server. Each recipient domain has its own level in
smtp_tls_policy_maps, so one message tries fingerprint, verify, secure
and may against the same server: a level that verifies the peer must
defer with Postfix's reason, and only "may" may deliver to a server
that cannot be verified."""

from __future__ import annotations

import re
import smtplib

import pytest

from tests.support import postfix
from tests.support.dns_server import DnsServer
from tests.support.running import free_port, relay_system, wait_for
from tests.support.tls_certs import fingerprint
from tests.unit.smtp.tls_peers import make_pki

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(not postfix.available(), reason="needs root and Postfix"),
]

ZONE = {
    "example.test": {"MX": ["10 mx.example.test."]},  # secure: the certificate is under it
    "verify.test": {"MX": ["10 mx.example.test."]},
    "fp.test": {"MX": ["10 mx.example.test."]},
    "may.test": {"MX": ["10 mx.example.test."]},
    "mx.example.test": {"A": ["127.0.0.1"]},
}
RCPTS = ["u@example.test", "u@verify.test", "u@fp.test", "u@may.test"]
NOT_OFFERED = "TLS is required, but was not offered by host mx.example.test[127.0.0.1]"
NOT_TRUSTED = "Server certificate not trusted"
NOT_VERIFIED = "Server certificate not verified"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


def relay_through(tmp_path, pki, server_cert, main: dict | None = None):
    """Postfix on a free port presenting server_cert (None: no STARTTLS), mta relaying
    one message for RCPTS to it; returns (mta log, recipients Postfix took)."""
    pf_port = free_port()
    tls = (
        "smtpd_tls_security_level = none\n"
        if server_cert is None
        else "smtpd_tls_security_level = may\nsmtpd_tls_loglevel = 1\n"
        f"smtpd_tls_cert_file = {server_cert[0]}\nsmtpd_tls_key_file = {server_cert[1]}\n"
    )
    pf = postfix.PostfixInstance(
        pf_port,
        tls + "defer_transports = smtp\n",  # keep what it takes in its queue
        "tlsmgr unix - - n 1000? 1 tlsmgr\n",  # smtpd's TLS needs it for entropy
    )
    policy = tmp_path / "tls_policy"
    policy.write_text(
        "example.test secure\nverify.test verify\nfp.test fingerprint\nmay.test may\n"
    )
    settings = {
        "smtp_tcp_port": str(pf_port),
        "smtp_tls_CAfile": str(pki["ca"].cafile),
        "smtp_tls_loglevel": "1",
        "smtp_tls_policy_maps": f"texthash:{policy}",
        "smtp_tls_fingerprint_cert_match": fingerprint(pki["good"][0]),
        **(main or {}),
    }
    inst = relay_system(tmp_path / "mta", "smtp unix - - n - - smtp\n", **settings)
    with DnsServer(ZONE) as dns:
        inst.env["MTA_DNS_SERVER"] = dns.nameserver
        pf.start()
        try:
            r = inst.mta("start")
            assert r.returncode == 0, r.stderr
            with smtplib.SMTP("127.0.0.1", inst.port, timeout=10) as s:
                s.sendmail("me@ok.example", RCPTS, b"Subject: tls\r\n\r\nhello\r\n")
            text = inst.wait_log(r"to=<u@[a-z.]+>.*status=(sent|deferred)", 40, count=4)

            def taken() -> set[str]:
                listing = pf.postqueue("-p")
                return {r for r in RCPTS if r in listing}

            expected_there = {r for r in RCPTS if re.search(rf"to=<{r}>.*status=sent", text)}
            wait_for(lambda: taken() == expected_there, 15)
            received = taken()
            pf_log = (pf.top / "maillog").read_text()
        finally:
            inst.stop()
            pf.stop()
    return text, received, pf_log


def status_of(text: str, rcpt: str) -> str:
    m = re.search(rf"to=<{re.escape(rcpt)}>.*status=(\w+) \((.*)\)", text)
    assert m, text
    return m.group(1) if m.group(1) == "sent" else f"deferred: {m.group(2)}"


def test_every_level_delivers_to_a_server_it_can_verify(tmp_path, pki):
    text, received, pf_log = relay_through(tmp_path, pki, pki["good"])
    assert [status_of(text, r) for r in RCPTS] == ["sent"] * 4
    assert received == set(RCPTS)
    verified = re.findall(
        r"Verified TLS connection established to mx\.example\.test\[127\.0\.0\.1\]"
        r":\d+: TLSv1\.[23] with cipher \S+ \(\d+/\d+ bits\)",
        text,
    )
    assert len(verified) == 3  # secure, verify, fingerprint; may logs Untrusted
    assert "Untrusted TLS connection established to mx.example.test[127.0.0.1]:" in text
    assert "TLS connection established from" in pf_log  # Postfix saw TLS too


@pytest.mark.parametrize("level", ["verify", "secure"])
def test_the_main_cf_level_alone(tmp_path, pki, level):
    main = {"smtp_tls_security_level": level, "smtp_tls_policy_maps": ""}
    text, received, _ = relay_through(tmp_path, pki, pki["good"], main)
    # verify checks the MX host name; secure the next-hop domain (or a name under it)
    expected = {
        "verify": ["sent"] * 4,
        "secure": ["sent"] + [f"deferred: {NOT_VERIFIED}"] * 3,
    }[level]
    assert [status_of(text, r) for r in RCPTS] == expected


@pytest.mark.parametrize(
    "server,secure,verify,fp",
    [
        (None, NOT_OFFERED, NOT_OFFERED, NOT_OFFERED),  # STARTTLS stripped
        ("wrong_name", NOT_VERIFIED, NOT_VERIFIED, NOT_VERIFIED),
        ("untrusted", NOT_TRUSTED, NOT_TRUSTED, NOT_VERIFIED),
        ("expired", NOT_TRUSTED, NOT_TRUSTED, NOT_VERIFIED),
    ],
)
def test_a_server_that_cannot_be_verified_gets_mail_only_at_may(
    tmp_path, pki, server, secure, verify, fp
):
    text, received, _ = relay_through(tmp_path, pki, pki[server] if server else None)
    assert [status_of(text, r) for r in RCPTS] == [
        f"deferred: {secure}",
        f"deferred: {verify}",
        f"deferred: {fp}",
        "sent",
    ]
    assert received == {"u@may.test"}
    for rcpt in RCPTS[:3]:
        dsn = re.search(rf"to=<{re.escape(rcpt)}>.*dsn=([\d.]+)", text).group(1)
        assert dsn == ("4.7.4" if server is None else "4.7.5")
