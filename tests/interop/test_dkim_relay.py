"""DKIM signing under the real master: smtplib -> smtpd/cleanup (signs) -> qmgr ->
smtp client -> an aiosmtpd sink; dkimpy verifies what arrived, with the public keys
served as TXT records by a DNS server on loopback."""

from __future__ import annotations

import smtplib

import dns.resolver
import pytest

from tests.support.dkim_keys import write_keys
from tests.support.dns_server import DnsServer
from tests.support.running import free_port, relay_system

dkim = pytest.importorskip("dkim")
pytest.importorskip("nacl")

pytestmark = pytest.mark.interop

MESSAGE = (
    b"From: News <news@example.org>\r\n"
    b"To: reader@far.example\r\n"
    b"Subject: this week's letter, with a subject long enough to fold\r\n\tonto a second line\r\n"
    b"Message-ID: <w49@example.org>\r\n"
    b"Date: Thu, 03 Dec 2026 06:00:00 +0000\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"\r\n" + "Grüße  aus Köln \r\n.leading dot\r\n\r\n".encode() + b"x" * 5000 + b"\r\n"
)


def test_signed_in_cleanup_and_verified_after_relay(tmp_path):
    from aiosmtpd.controller import Controller

    received = []

    class Sink:
        async def handle_DATA(self, server, session, envelope):
            received.append(envelope.original_content)
            return "250 2.0.0 Ok: taken"

    records, table = write_keys(tmp_path, [("r2026", "rsa"), ("e2026", "ed25519")])
    zone = {}
    for selector, txt in records.items():
        strings = " ".join(f'"{txt[i : i + 255]}"' for i in range(0, len(txt), 255))
        zone[f"{selector}._domainkey.example.org"] = {"TXT": [strings]}
    (tmp_path / "signing").write_text("@example.org r2026, e2026\n")
    sink_port = free_port()
    ctl = Controller(Sink(), hostname="127.0.0.1", port=sink_port)
    ctl.start()
    inst = relay_system(
        tmp_path / "mta",
        "smtp unix - - n - - smtp\n",
        relayhost=f"[127.0.0.1]:{sink_port}",
        dkim_key_table=f"texthash:{table}",
        dkim_signing_table=f"texthash:{tmp_path / 'signing'}",
    )
    port = inst.port
    with DnsServer(zone) as server:
        try:
            r = inst.mta("start")
            assert r.returncode == 0, r.stderr
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
                s.sendmail("news@example.org", ["reader@far.example"], MESSAGE)
            inst.wait_log(r": removed", 20)
        finally:
            inst.stop()
            ctl.stop()
        resolver = dns.resolver.Resolver(configure=False)
        host, dns_port = server.nameserver.rsplit(":", 1)
        resolver.nameservers = [host]
        resolver.port = int(dns_port)

        def dnsfunc(name, timeout=5):
            answer = resolver.resolve(name.decode().rstrip("."), "TXT")
            return b"".join(b"".join(rr.strings) for rr in answer)

        [message] = received
        assert message.startswith(b"DKIM-Signature: v=1; a=rsa-sha256;")
        d = dkim.DKIM(message)
        assert [d.verify(idx=i, dnsfunc=dnsfunc) for i in range(2)] == [True, True]
        names = {n.rstrip(".").lower() for n, t in server.queries if t == "TXT"}
    assert names == {"r2026._domainkey.example.org", "e2026._domainkey.example.org"}
