"""memcached_server - a private memcached on 127.0.0.1 for tests (Debian's memcached)

SYNOPSIS
    from tests.support.memcached_server import MemcachedServer, memcached_available
    with MemcachedServer() as mc:              # memcached -u nobody -l 127.0.0.1 -p PORT
        mc.port
        mc.set("key", b"value", ttl=0)         # raw text protocol, for test set-up
        mc.get("key")                          # (flags, value) or None
        mc.stop(); mc.start()                  # a server that goes away and comes back

DESCRIPTION
    Starts memcached as an unprivileged process (user nobody when the
    tests run as root) on a free port of 127.0.0.1, without UDP, and
    waits until it accepts. memcached_available() says why not when the
    program is missing, for a skip reason.

SECURITY
    127.0.0.1 only: for tests.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time

from tests.support.running import free_port

MEMCACHED = "/usr/bin/memcached"


def memcached_available() -> str | None:
    if not os.path.exists(MEMCACHED) and shutil.which("memcached") is None:
        return "memcached is not installed (Debian package memcached)"
    return None


class MemcachedServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def start(self) -> MemcachedServer:
        argv = [shutil.which("memcached") or MEMCACHED, "-l", "127.0.0.1", "-p", str(self.port)]
        argv += ["-U", "0", "-m", "16"]
        if os.geteuid() == 0:
            argv += ["-u", "nobody"]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.5).close()
                return self
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"memcached exited with status {self.proc.returncode}"
                    ) from None
                time.sleep(0.05)
        raise RuntimeError("memcached did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
            self.proc = None

    def __enter__(self) -> MemcachedServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _command(self, data: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", self.port), 5) as s:
            s.sendall(data)
            out = b""
            while not out.endswith((b"END\r\n", b"STORED\r\n", b"DELETED\r\n", b"NOT_FOUND\r\n")):
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
            return out

    def set(self, key: str, value: bytes, flags: int = 0, ttl: int = 0) -> None:
        reply = self._command(
            b"set %s %d %d %d\r\n%s\r\n" % (key.encode(), flags, ttl, len(value), value)
        )
        assert reply == b"STORED\r\n", reply

    def get(self, key: str) -> tuple[int, bytes] | None:
        reply = self._command(b"get %s\r\n" % key.encode())
        if reply == b"END\r\n":
            return None
        head, _, rest = reply.partition(b"\r\n")
        _, _, flags, size = head.split(b" ")[:4]
        return int(flags), rest[: int(size)]

    def delete(self, key: str) -> None:
        self._command(b"delete %s\r\n" % key.encode())
