"""spawn(8) under the real master: a tiny policy program per connection, its time limit,
its exit status, refused accounts, and the SMTPD_POLICY_README set-up with smtpd."""

from __future__ import annotations

import os
import shutil
import smtplib
import socket
import tempfile
from pathlib import Path

import pytest

from tests.support.running import Instance, free_port, wait_for

pytestmark = [pytest.mark.interop, pytest.mark.timeout(120)]

PYTHON = "/usr/bin/python3"  # a system interpreter user nobody can run

# Answers each policy request: REJECT for sender bad@..., DUNNO otherwise; logs to stderr
POLICY = """
import os, sys
attrs = {}
for line in sys.stdin:
    line = line.rstrip("\\n")
    if line:
        name, _, value = line.partition("=")
        attrs[name] = value
        continue
    if attrs.get("sender", "").startswith("bad@"):
        action = "REJECT sender not wanted here"
    elif attrs.get("sender", "").startswith("who@"):
        action = "DUNNO uid=%d" % os.getuid()
    else:
        action = "DUNNO"
    sys.stdout.write("action=%s\\n\\n" % action)
    sys.stdout.flush()
    attrs = {}
sys.stderr.write("policy done\\n")
sys.exit(int(os.environ.get("POLICY_EXIT", "0")))
"""


@pytest.fixture
def world():
    """A directory user nobody can read (pytest's tmp_path is below a 0700 one)."""
    top = Path(tempfile.mkdtemp(prefix="mta-spawn-interop-"))
    top.chmod(0o755)
    (top / "policy.py").write_text(POLICY)
    (top / "policy.py").chmod(0o644)
    yield top
    shutil.rmtree(top, ignore_errors=True)


USER = "user=nobody" if os.geteuid() == 0 else f"user={os.environ.get('USER', 'nobody')}"


@pytest.fixture
def running(tmp_path):
    made = []

    def start(master_cf: str, **main: str) -> Instance:
        inst = Instance(tmp_path / f"i{len(made)}", master_cf, main)
        made.append(inst)
        r = inst.mta("start")
        assert r.returncode == 0, r.stderr + inst.log()
        return inst

    yield start
    for inst in made:
        inst.stop()


def ask(inst: Instance, service: str, sender: str, timeout: float = 20) -> bytes:
    path = os.path.join(inst.queue, "private", service)
    assert wait_for(lambda: os.path.exists(path), 10), inst.log()
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(f"request=smtpd_access_policy\nsender={sender}\n\n".encode())
        reply = b""
        while not reply.endswith(b"\n\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            reply += chunk
        return reply


def test_each_connection_gets_the_command_on_its_socket(running, world):
    inst = running(f"policy unix - n n - 0 spawn {USER} argv={PYTHON} {world}/policy.py\n")
    assert ask(inst, "policy", "bad@example.org") == b"action=REJECT sender not wanted here\n\n"
    reply = ask(inst, "policy", "who@example.org")
    expected_uid = 65534 if os.geteuid() == 0 else os.getuid()
    assert reply == f"action=DUNNO uid={expected_uid}\n\n".encode()
    # the command's stderr is logged, under the service's process name
    inst.wait_log(r"spawn\[\d+\]: warning: command /usr/bin/python3: policy done", count=2)


def test_hung_command_is_killed_at_service_time_limit(running, world):
    (world / "hang.py").write_text("import time\ntime.sleep(300)\n")
    inst = running(
        f"hang unix - n n - 0 spawn {USER} argv={PYTHON} {world}/hang.py\n",
        hang_time_limit="2s",
    )
    path = os.path.join(inst.queue, "private", "hang")
    assert wait_for(lambda: os.path.exists(path), 10)
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(20)
        s.connect(path)
        assert s.recv(10) == b""  # the command was killed: the socket closed
    log = inst.wait_log(r"command time limit exceeded")
    assert "warning: /usr/bin/python3: process id" in log
    inst.wait_log(r"warning: command /usr/bin/python3 killed by signal 9")


def test_exit_status_is_logged(running, world):
    inst = running(
        f"policy unix - n n - 0 spawn {USER} argv=/usr/bin/env POLICY_EXIT=7 "
        f"{PYTHON} {world}/policy.py\n"
    )
    assert ask(inst, "policy", "a@example.org") == b"action=DUNNO\n\n"
    inst.wait_log(r"warning: command /usr/bin/env exit status 7")


@pytest.mark.skipif(os.geteuid() != 0, reason="the account checks need real users")
@pytest.mark.parametrize(
    "attrs, message",
    [
        ("user=root argv=/bin/cat", "user= command-line attribute specifies root privileges"),
        ("argv=/bin/cat", "missing user= command-line attribute"),
        ("user=nobody", "missing argv= command-line attribute"),
        ("user=nobody bogus=1 argv=/bin/cat", "unknown attribute name: bogus"),
    ],
)
def test_refused_attributes_are_fatal(running, attrs, message):
    inst = running(f"policy unix - n n - 0 spawn {attrs}\n")
    path = os.path.join(inst.queue, "private", "policy")
    assert wait_for(lambda: os.path.exists(path), 10)
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(20)
        s.connect(path)
        s.sendall(b"request=smtpd_access_policy\n\n")
        inst.wait_log(r"spawn\[\d+\]: fatal: " + message)


def test_readme_policy_setup_with_smtpd(running, world):
    """SMTPD_POLICY_README's lines, unchanged but for the names, reach the SMTP client."""
    port = free_port()
    inst = running(
        f"127.0.0.1:{port} inet n - n - - smtpd\n"
        "cleanup unix n - n - 0 cleanup\n"
        f"policy  unix  -  n  n  -  0  spawn\n  {USER} argv={PYTHON} {world}/policy.py\n",
        **{
            "policy_time_limit": "3600",
            "myhostname": "mx.test.example",
            "mydestination": "mx.test.example",
            "mynetworks": "127.0.0.0/8",
            "local_recipient_maps": "",
            "smtpd_peername_lookup": "no",
            "smtpd_recipient_restrictions": (
                "permit_mynetworks, reject_unauth_destination, "
                "check_policy_service unix:private/policy"
            ),
            "smtpd_sender_restrictions": "check_policy_service unix:private/policy",
        },
    )
    assert wait_for(lambda: _accepts(port), 10), inst.log()
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        s.ehlo("client.example")
        assert s.mail("bad@example.org")[0] == 250  # smtpd_delay_reject: judged at RCPT
        code, text = s.rcpt("user@mx.test.example")
        assert code == 554
        assert text.startswith(b"5.7.1 <bad@example.org>: Sender address rejected: sender not")
        s.rset()
        assert s.mail("good@example.org")[0] == 250
        assert s.rcpt("user@mx.test.example")[0] == 250
    r = inst.mta("check")
    assert r.returncode == 0 and "policy_time_limit" not in r.stderr, r.stderr


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 1).close()
        return True
    except OSError:
        return False


def test_connections_at_once_each_get_a_command(running, world):
    """One command per spawn process at a time: the master starts more for more clients."""
    inst = running(f"policy unix - n n - 0 spawn {USER} argv={PYTHON} {world}/policy.py\n")
    path = os.path.join(inst.queue, "private", "policy")
    assert wait_for(lambda: os.path.exists(path), 10)
    held = []
    try:
        for _ in range(3):  # three clients that keep their connections open
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(20)
            s.connect(path)
            s.sendall(b"request=smtpd_access_policy\nsender=bad@example.org\n\n")
            held.append(s)
        for s in held:
            assert s.recv(4096) == b"action=REJECT sender not wanted here\n\n"
        assert len(inst.children("policy")) >= 3
    finally:
        for s in held:
            s.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can keep the privilege to switch")
def test_unprivileged_spawn_service_refuses_to_start(running, world):
    inst = running(f"policy unix - - n - 0 spawn user=nobody argv={PYTHON} {world}/policy.py\n")
    path = os.path.join(inst.queue, "private", "policy")
    assert wait_for(lambda: os.path.exists(path), 10)
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(20)
        s.connect(path)
        inst.wait_log(r"spawn\[\d+\]: fatal: service policy: spawn must run with unprivileged=n")


def test_readme_tcp_form_of_the_policy_service(running, world):
    """SMTPD_POLICY_README's TCP variant: an inet spawn service on 127.0.0.1."""
    port = free_port()
    inst = running(
        f"127.0.0.1:{port}  inet  n  n  n  -  0  spawn\n  {USER} argv={PYTHON} {world}/policy.py\n"
    )
    assert wait_for(lambda: _accepts(port), 10), inst.log()
    with socket.create_connection(("127.0.0.1", port), 20) as s:
        s.sendall(b"request=smtpd_access_policy\nsender=bad@example.org\n\n")
        assert s.recv(4096) == b"action=REJECT sender not wanted here\n\n"


def test_command_environment_is_export_environment_only(tmp_path):
    inst = Instance(
        tmp_path / "env",
        f"printenv unix - n n - 0 spawn {USER} argv=/usr/bin/env\n",
        {"export_environment": "TZ LANG MTA_TEST_EXPORTED"},
    )
    inst.env["MTA_TEST_EXPORTED"] = "yes"  # in the master's environment, and exported
    inst.env["MTA_TEST_SECRET"] = "no"  # in the master's environment, not exported
    r = inst.mta("start")
    assert r.returncode == 0, r.stderr
    try:
        path = os.path.join(inst.queue, "private", "printenv")
        assert wait_for(lambda: os.path.exists(path), 10)
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(20)
            s.connect(path)
            out = b""
            while chunk := s.recv(4096):
                out += chunk
    finally:
        inst.stop()
    env = dict(line.split(b"=", 1) for line in out.splitlines())
    assert env[b"MTA_TEST_EXPORTED"] == b"yes"
    assert set(env) <= {b"TZ", b"LANG", b"MTA_TEST_EXPORTED", b"PATH"} and b"PATH" in env, out
