"""Test instances: a configuration directory with its queue tree, and an
in-process smtpd on 127.0.0.1 run by a real event loop in a thread."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from pathlib import Path

from mta.config import Config
from mta.queue.paths import QUEUE_NAMES


def make_instance(tmp_path: Path, main_cf: str = "", master_cf: str = "") -> Path:
    """Write main.cf (and master.cf) for an instance under tmp_path; return its directory."""
    cdir = tmp_path / "etc"
    spool = tmp_path / "spool"
    cdir.mkdir(parents=True, exist_ok=True)
    for name in (*QUEUE_NAMES, "private", "public", "pid"):
        (spool / name).mkdir(parents=True, exist_ok=True)
    (tmp_path / "data").mkdir(exist_ok=True)
    base = (
        f"queue_directory = {spool}\n"
        f"data_directory = {tmp_path / 'data'}\n"
        f"maillog_file = {tmp_path / 'maillog'}\n"
        f"mail_owner = {_user()}\n"
        "myhostname = mx.test.example\n"
        "mydomain = test.example\n"
        "inet_interfaces = loopback-only\n"
        "mynetworks = 127.0.0.1/32\n"
        "smtpd_error_sleep_time = 0\n"
        # no proxymap runs beside the in-process smtpd: every local user is known
        "local_recipient_maps =\n"
    )
    (cdir / "main.cf").write_text(base + main_cf)
    (cdir / "master.cf").write_text(master_cf)
    return cdir


def _user() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name


def incoming_files(cdir: Path) -> list[str]:
    """Queue files (complete ones) under incoming/, hashed or not."""
    spool = Path(Config(str(cdir)).get("queue_directory"))
    out = []
    for root, _, files in os.walk(spool / "incoming"):
        out += [os.path.join(root, f) for f in files if not f.startswith(".")]
    return sorted(out)


class SmtpdThread:
    """An smtpd (SmtpdServer + SmtpdSession) on 127.0.0.1 in a background loop; close()
    it, or use it in a with statement."""

    def __init__(self, cdir: Path) -> None:
        from mta import log
        from mta.smtpd.server import SmtpdServer
        from mta.smtpd.session import SmtpdSession

        self.cfg = Config(str(cdir))
        log.init("smtpd", self.cfg)
        self.loop = asyncio.new_event_loop()
        self.server = SmtpdServer(self.cfg)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        self.port = sock.getsockname()[1]
        self.srv = self.loop.run_until_complete(
            self.loop.create_server(lambda: SmtpdSession(self.server), sock=sock)
        )
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        async def shutdown() -> None:
            self.srv.close()
            for session in list(self.server.sessions):
                if session.transport is not None:
                    session.transport.abort()
            await asyncio.sleep(0.05)

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.server.executor.shutdown()
        self.loop.close()

    def __enter__(self) -> SmtpdThread:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class RawClient:
    """A plain socket client for byte-exact protocol tests."""

    def __init__(self, port: int, source: str = "127.0.0.1") -> None:
        self.sock = socket.create_connection(
            ("127.0.0.1", port), timeout=10, source_address=(source, 0)
        )
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> str:
        """Read one (possibly multi-line) reply."""
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError(f"closed; got {lines!r} {self.buf!r}")
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line.decode())
            if len(line) < 4 or line[3:4] != b"-":
                return "\n".join(lines)

    def closed(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except (ConnectionResetError, TimeoutError):
            return True

    def close(self) -> None:
        self.sock.close()


def greet(client: RawClient, verb: bytes = b"EHLO") -> str:
    """Read the test instance's 220 banner, send verb with client.example, return the reply."""
    assert client.reply().startswith("220 mx.test.example ESMTP")
    client.send(verb + b" client.example\r\n")
    return client.reply()
