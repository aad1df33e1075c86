"""mta_sts_site - an MTA-STS policy server for tests: HTTPS on 127.x.y.z:443

SYNOPSIS
    from tests.support.mta_sts_site import PolicySite, POLICY_TEXT
    site = PolicySite(server_ssl_context)      # skips the test when port 443 is refused
    site = PolicySite(ctx, "127.88.5.25")      # on a chosen loopback address
    site.address                               # serve it as the A record of mta-sts.DOMAIN
    site.answer = (200, "text/plain", b"version: STSv1\n...")
    site.requests                              # [(Host header, path), ...]
    site.close()

DESCRIPTION
    RFC 8461 puts the policy at https://mta-sts.DOMAIN/.well-known/mta-sts.txt,
    port 443 and nothing else, so the server listens there, on a random
    address of 127.0.0.0/8 so that tests do not collide. Every GET gets
    site.answer (status, Content-Type, body); a 301 or 302 carries a
    Location header.

SECURITY
    Loopback only; test certificates.
"""

from __future__ import annotations

import http.server
import random
import ssl
import threading

import pytest

MTA_STS_PORT = 443
POLICY_TEXT = (
    "version: STSv1\r\nmode: enforce\r\nmx: mx1.example.test\r\n"
    "mx: *.backup.example.test\r\nmax_age: 86400\r\n"
)


class PolicyHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - the http.server interface
        site = self.server.site
        site.requests.append((self.headers.get("Host"), self.path))
        status, ctype, body = site.answer
        self.send_response(status)
        if ctype:
            self.send_header("Content-Type", ctype)
        if status in (301, 302):
            self.send_header("Location", "https://elsewhere.example.test/")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class PolicySite:
    """An HTTPS server on ADDRESS:443 answering every GET with self.answer."""

    def __init__(self, ctx: ssl.SSLContext, address: str = "") -> None:
        self.address = address or (
            f"127.{random.randint(1, 250)}.{random.randint(1, 250)}.{random.randint(2, 250)}"
        )
        self.answer = (200, "text/plain", POLICY_TEXT.encode())
        self.requests: list[tuple[str, str]] = []
        try:
            self.httpd = http.server.ThreadingHTTPServer(
                (self.address, MTA_STS_PORT), PolicyHandler
            )
        except PermissionError:
            pytest.skip(
                "binding port 443 needs root (the policy server listens where RFC 8461 puts it)"
            )
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.httpd.site = self
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
