"""TLS peers for smtp client tests: a test PKI, a STARTTLS sink, one delivery to it."""

from __future__ import annotations

import ssl
from pathlib import Path

from aiosmtpd.controller import Controller

from mta.config import load_config
from mta.smtp import deliver
from tests.support.agent import queue_message, request_for, run_agent
from tests.support.instance import make_instance
from tests.support.tls_certs import TestCA
from tests.unit.smtp.peers import SinkHandler, free_port

# MX names for the loopback DNS server (tests.support.dns_server.zone_fixtures)
TLS_ZONE = {
    "example.test": {"MX": ["10 mx.example.test."]},
    "mx.example.test": {"A": ["127.0.0.1"]},
    "hosted.test": {"MX": ["10 mx.example.test."]},  # served by example.test's MX host
    "sub.hosted.test": {"MX": ["10 mx.example.test."]},
}


class TlsRecorder(SinkHandler):
    """A sink that notes, per message, whether it came over TLS and the client's certificate."""

    def __init__(self):
        super().__init__()
        self.tls: list[bool] = []
        self.client_certs: list[dict | None] = []
        self.versions: list[str | None] = []

    async def handle_DATA(self, server, session, envelope):
        self.tls.append(session.ssl is not None)
        ssl_object = session.ssl.get("ssl_object") if session.ssl else None
        self.client_certs.append(ssl_object.getpeercert() if ssl_object else None)
        self.versions.append(ssl_object.version() if ssl_object else None)
        return await super().handle_DATA(server, session, envelope)


def make_pki(d: Path) -> dict:
    """A trusted CA, a rogue one, and server certificates good and bad."""
    ca, rogue = TestCA(d / "ca", "Test CA"), TestCA(d / "rogue", "Rogue CA")
    return {
        "ca": ca,
        "rogue": rogue,
        "good": ca.issue("good", ["mx.example.test"]),
        "wildcard": ca.issue("wildcard", ["*.example.test"]),
        "cn_only": ca.issue("cn_only", [], cn="mx.example.test"),
        "wrong_name": ca.issue("wrong", ["mail.other.example"]),
        "expired": ca.issue("expired", ["mx.example.test"], expired=True),
        "untrusted": rogue.issue("untrusted", ["mx.example.test"]),
        "hosted": ca.issue("hosted", ["mx.hosted.test"]),
        "client": ca.issue("client", ["client.example.test"], client=True),
    }


def send(
    tmp_path,
    server,
    main_cf: str,
    nexthop: str = "example.test",
    rcpt_domain: str = "",
    port: int = 0,
):
    """Queue a message for u@RCPT_DOMAIN (default: the next hop's domain) and let the
    smtp client deliver it to a sink that offers STARTTLS with server: a (cert, key)
    pair, an ssl.SSLContext, or None (no STARTTLS). Returns (handler, status,
    maillog text, cfg, msg). port: the sink's port (default: a free one)."""
    handler = TlsRecorder()
    if isinstance(server, tuple):
        server = TestCA.context(*server)
    assert server is None or isinstance(server, ssl.SSLContext)
    ctl = Controller(handler, hostname="127.0.0.1", port=port or free_port(), tls_context=server)
    ctl.start()
    try:
        cfg = load_config(
            str(
                make_instance(
                    tmp_path,
                    f"smtp_tcp_port = {ctl.port}\nsmtp_helo_timeout = 5s\n"
                    "smtp_starttls_timeout = 5s\nsmtp_tls_loglevel = 1\n" + main_cf,
                )
            )
        )
        domain = rcpt_domain or nexthop.lstrip("[").split("]")[0].split(":")[0]
        msg = queue_message(cfg, [f"u@{domain}"])
        result = run_agent(deliver, cfg, request_for(msg, nexthop), tmp_path)
    finally:
        ctl.stop()
    (status,) = result.statuses
    return handler, status, (tmp_path / "maillog").read_text(), cfg, msg
