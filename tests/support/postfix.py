"""A private Postfix instance run by Postfix's own master, for tests that compare
mta's output with Postfix's (needs root and Debian's postfix package)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from tests.support.running import wait_for

DAEMONS = "/usr/lib/postfix/sbin"


def available() -> bool:
    return os.path.exists(f"{DAEMONS}/master") and os.getuid() == 0


class PostfixInstance:
    def __init__(self, port: int, main_cf: str, master_extra: str = "") -> None:
        # not under pytest's tmp_path: the master works there as the postfix
        # user, who must be able to reach it through every parent directory
        top = Path(tempfile.mkdtemp(prefix="mta-postfix-"))
        top.chmod(0o755)
        self.top, self.port = top, port
        self.etc, self.queue = top / "etc", top / "spool"
        for d in (self.etc, self.queue, top / "data"):
            d.mkdir(parents=True)
        shutil.chown(top / "data", "postfix")
        (self.etc / "main.cf").write_text(
            f"queue_directory = {self.queue}\ndata_directory = {top / 'data'}\n"
            f"daemon_directory = {DAEMONS}\ncompatibility_level = 3.6\n"
            "command_directory = /usr/sbin\nmail_owner = postfix\nsetgid_group = postdrop\n"
            "myhostname = postfix.test.example\ninet_interfaces = 127.0.0.1\n"
            "mynetworks = 127.0.0.0/8\nmaillog_file = /dev/stdout\nalias_maps =\n"
            "local_recipient_maps =\nsmtpd_peername_lookup = no\nmydestination =\n" + main_cf
        )
        (self.etc / "master.cf").write_text(
            f"127.0.0.1:{port} inet n - n - - smtpd\n"
            "cleanup unix n - n - 0 cleanup\n"
            "rewrite unix - - n - - trivial-rewrite\n"
            "qmgr unix n - n 300 1 qmgr\n"
            "smtp unix - - n - - smtp\n"
            "relay unix - - n - - smtp\n"
            "error unix - - n - - error\n"
            "retry unix - - n - - error\n"
            "defer unix - - n - 0 bounce\n"
            "bounce unix - - n - 0 bounce\n"
            "trace unix - - n - 0 bounce\n"
            "showq unix n - n - - showq\n"
            "postlog unix-dgram n - n - 1 postlogd\n" + master_extra
        )
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        subprocess.run(["postfix", "-c", str(self.etc), "check"], capture_output=True)
        self.log = open(self.top / "maillog", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [f"{DAEMONS}/master", "-c", str(self.etc), "-d"],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

        def listening() -> bool:
            import socket

            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                return False

        assert wait_for(listening, 15), (self.top / "maillog").read_text()

    def postqueue(self, *args: str) -> str:
        r = subprocess.run(
            ["postqueue", "-c", str(self.etc), *args], capture_output=True, text=True, timeout=30
        )
        assert r.returncode == 0, r.stderr
        return r.stdout

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(20)
            self.log.close()
        shutil.rmtree(self.top, ignore_errors=True)
