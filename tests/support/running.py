"""A mail system under the real master, driven through the mta command."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

from tests.support.ports import free_port  # noqa: F401 (tests import it from here)

HERE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "interop")
ROOT = os.path.dirname(os.path.dirname(HERE))


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


class Instance:
    """A config directory in tmp_path and the mta command pointed at it."""

    def __init__(self, top, master_cf: str, main_extra: dict | None = None) -> None:
        self.top = str(top)
        self.dir = os.path.join(self.top, "etc")
        self.queue = os.path.join(self.top, "spool")
        self.maillog = os.path.join(self.top, "maillog")
        os.makedirs(self.dir, exist_ok=True)
        main = {
            "queue_directory": self.queue,
            "data_directory": os.path.join(self.top, "data"),
            "maillog_file": self.maillog,
            "inet_interfaces": "loopback-only",
            "mail_owner": _current_user(),
            "service_throttle_time": "60s",
        }
        main.update(main_extra or {})
        with open(os.path.join(self.dir, "main.cf"), "w") as f:
            f.writelines(f"{k} = {v}\n" for k, v in main.items())
        self.write_master_cf(master_cf)
        self.env = dict(os.environ, PYTHONPATH=os.pathsep.join([HERE, ROOT]))
        self.env.pop("MTA_LOG_STDOUT", None)
        self.env.pop("MTA_CONFIG_DIR", None)

    def write_master_cf(self, text: str) -> None:
        with open(os.path.join(self.dir, "master.cf"), "w") as f:
            f.write(text)

    def mta(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "mta", *args, "-c", self.dir],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def popen(self, *args: str, **kw) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "mta", *args, "-c", self.dir], env=self.env, text=True, **kw
        )

    def log(self) -> str:
        try:
            with open(self.maillog) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def wait_log(self, pattern: str, timeout: float = 10.0, count: int = 1) -> str:
        found = wait_for(lambda: len(re.findall(pattern, self.log())) >= count, timeout)
        assert found, f"no {count}x {pattern!r} in log:\n{self.log()}"
        return self.log()

    def master_pid(self) -> int | None:
        try:
            with open(os.path.join(self.queue, "pid", "master.pid")) as f:
                return int(f.read().strip() or 0)
        except FileNotFoundError:
            return None

    def children(self, service: str) -> list[int]:
        """Pids of live processes the master runs for service NAME."""
        master = self.master_pid()
        out = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if fields[0] == "Z" or int(fields[1]) != master:
                continue
            if b"-n" in argv and argv[argv.index(b"-n") + 1] == service.encode():
                out.append(int(entry))
        return sorted(out)

    def stop(self) -> None:
        pid = self.master_pid()
        if pid:
            try:
                os.kill(pid, signal.SIGQUIT)
            except ProcessLookupError:
                return
            wait_for(lambda: self.master_pid() is None, 10)


def _current_user() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name


RELAY_MAIN = {
    "myhostname": "mx.test.example",
    "mydestination": "",
    "mynetworks": "127.0.0.0/8",
    "local_recipient_maps": "",
    "smtpd_peername_lookup": "no",
}
RELAY_SERVICES = "qmgr fifo n - n 300 1 qmgr\ncleanup unix n - n - 0 cleanup\n"


def relay_system(top, services: str, **main: str) -> Instance:
    """An instance that takes mail on smtpd (inst.port) and hands it to qmgr and
    the given delivery services; main.cf is RELAY_MAIN with main on top. Not started."""
    port = free_port()
    inst = Instance(
        top,
        f"127.0.0.1:{port} inet n - n - - smtpd\n" + RELAY_SERVICES + services,
        {**RELAY_MAIN, **main},
    )
    inst.port = port
    return inst


def mx_system(top, sink_port: int, nameserver: str, **main: str) -> Instance:
    """An instance that takes mail on smtpd (inst.port) and delivers it through
    the recipients' MX hosts, looked up on nameserver (a tests.support.dns_server),
    on port sink_port; main on top of the usual settings. Not started."""
    port = free_port()
    inst = Instance(
        top,
        f"127.0.0.1:{port} inet n - n - - smtpd\n"
        "qmgr fifo n - n 300 1 qmgr\n"
        "cleanup unix n - n - 0 cleanup\n"
        "smtp unix - - n - - smtp\n",
        {
            "myhostname": "mx.test.example",
            "mydestination": "",
            "mynetworks": "127.0.0.0/8",
            "local_recipient_maps": "",
            "smtpd_peername_lookup": "no",
            "smtp_tcp_port": str(sink_port),
            **main,
        },
    )
    inst.env["MTA_DNS_SERVER"] = nameserver
    inst.port = port
    return inst


def queue_files(inst: Instance, queue: str) -> list[str]:
    """The complete queue files of one queue of inst (hashed or not), sorted."""
    out = []
    for root, _, files in os.walk(os.path.join(inst.queue, queue)):
        out += [os.path.join(root, f) for f in files if not f.startswith(".")]
    return sorted(out)


def intake_instance(tmp_path, main_cf: dict[str, str] | None = None) -> Instance:
    """smtpd, qmqpd and pickup feeding cleanup, local mail only; inst.port, inst.qmqp."""
    port, qmqp = free_port(), free_port()
    master_cf = (
        f"127.0.0.1:{port} inet n - n - - smtpd\n"
        f"127.0.0.1:{qmqp} inet n - n - - qmqpd\n"
        "pickup unix n - n 60 1 pickup\n"
        "cleanup unix n - n - 0 cleanup\n"
        "proxymap unix - - n - - proxymap\n"
    )
    inst = Instance(
        tmp_path,
        master_cf,
        {
            "myhostname": "mx.test.example",
            "mydestination": "mx.test.example",
            "mynetworks": "127.0.0.1/32",
            "alias_maps": "",
            "local_recipient_maps": "",
            "qmqpd_authorized_clients": "127.0.0.1",
            "qmqpd_error_delay": "0",
            "smtpd_peername_lookup": "no",
            **(main_cf or {}),
        },
    )
    inst.port, inst.qmqp = port, qmqp
    return inst
