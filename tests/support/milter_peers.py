"""Milters for the tests: the scripted libmilter peer (tests/support/pymilter_peer.py under
Debian's python3-milter), OpenDKIM, and broken milters for the failure cases."""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.running import free_port

SYSTEM_PYTHON = "/usr/bin/python3"
PEER = Path(__file__).with_name("pymilter_peer.py")
OPENDKIM = shutil.which("opendkim") or "/usr/sbin/opendkim"


def have_pymilter() -> bool:
    if not os.path.exists(SYSTEM_PYTHON):
        return False
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import Milter"], capture_output=True)
    return probe.returncode == 0


def need_pymilter() -> None:
    if not have_pymilter():
        pytest.skip("Debian python3-milter (import Milter under /usr/bin/python3) is missing")


def wait_port(port: int, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@contextmanager
def pymilter_peer(unix_path: Path | None = None):
    """The scripted libmilter milter on a free port (or the UNIX socket unix_path);
    yields the port (or the path)."""
    need_pymilter()
    port = free_port()
    where = f"unix:{unix_path}" if unix_path else f"inet:{port}@127.0.0.1"
    proc = subprocess.Popen(
        [SYSTEM_PYTHON, str(PEER), where], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        if unix_path:
            end = time.monotonic() + 10
            while not unix_path.exists() and time.monotonic() < end:
                time.sleep(0.05)
            yield unix_path
        else:
            wait_port(port)
            yield port
    finally:
        proc.kill()  # libmilter waits for its sessions on SIGTERM
        proc.wait(5)


@contextmanager
def opendkim(tmp_path: Path, domain: str, selector: str, key_pem: bytes, canon: str = "simple"):
    """opendkim signing for domain with the key (Canonicalization canon); yields the port."""
    if not os.path.exists(OPENDKIM):
        pytest.skip("Debian opendkim is not installed")
    port = free_port()
    key = tmp_path / "dkim.key"
    key.write_bytes(key_pem)
    key.chmod(0o600)
    conf = tmp_path / "opendkim.conf"
    conf.write_text(
        "Mode s\n"
        f"Domain {domain}\n"
        f"Selector {selector}\n"
        f"KeyFile {key}\n"
        f"Socket inet:{port}@127.0.0.1\n"
        "InternalHosts 127.0.0.1\n"
        "Background no\n"
        "Syslog no\n"
        f"PidFile {tmp_path / 'opendkim.pid'}\n"
        "RequireSafeKeys no\n"
        f"Canonicalization {canon}\n"
    )
    proc = subprocess.Popen(
        [OPENDKIM, "-f", "-x", str(conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        wait_port(port)
        yield port
    finally:
        _stop(proc)


class BrokenMilter:
    """A listener that misbehaves after OPTNEG (or at once): "sleep" never answers the
    connect event, "close" sends half a reply and hangs up, "garbage" answers with
    1 MB of random bytes."""

    def __init__(self, how: str) -> None:
        self.how = how
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        try:
            conn.recv(4 + 13)  # OPTNEG
            conn.sendall(struct.pack("!IcIII", 13, b"O", 6, 0, 0))
            conn.recv(65536)  # the connect event (and macros)
            if self.how == "sleep":
                time.sleep(30)
            elif self.how == "close":
                conn.sendall(struct.pack("!I", 1))  # a header, and no command byte
                conn.close()
            elif self.how == "garbage":
                conn.sendall(b"\xff" + os.urandom((1 << 20) - 1))
        except OSError:
            pass

    def close(self) -> None:
        self.sock.close()
        for conn in self.conns:
            conn.close()
