"""spawn.command: a real program on one end of a real socket pair."""

from __future__ import annotations

import asyncio
import os
import pwd
import socket
import time

import pytest

from mta import log
from mta.spawn.command import STDERR_LINES, SpawnResult, report_result, run_on_connection

PYTHON = "/usr/bin/python3"  # readable by user nobody, unlike a python under /root
ENV = {"PATH": "/bin:/usr/bin"}

# a policy server in one line of Python: one request, one reply, on stdin/stdout
POLICY = (
    "import sys\n"
    "for line in sys.stdin:\n"
    "    if line == '\\n':\n"
    "        sys.stdout.write('action=DUNNO uid=%d\\n\\n' % __import__('os').getuid())\n"
    "        sys.stdout.flush()\n"
)


def account():
    if os.geteuid() != 0:
        return None, None
    pw = pwd.getpwnam("nobody")
    return pw.pw_uid, pw.pw_gid


@pytest.fixture
def logged(capfd):
    log.init("spawn", None, stdout=True)

    def text() -> str:
        return capfd.readouterr().out

    return text


def run(argv, conn: socket.socket, time_limit: float = 30) -> SpawnResult:
    uid, gid = account()
    return asyncio.run(
        run_on_connection(argv, conn.fileno(), uid=uid, gid=gid, env=ENV, time_limit=time_limit)
    )


def test_socket_is_the_commands_stdin_and_stdout():
    ours, theirs = socket.socketpair()
    theirs.setblocking(False)  # as the accept loop hands it over; the command must see blocking
    ours.sendall(b"request=smtpd_access_policy\nsender=a@b.example\n\n")
    ours.shutdown(socket.SHUT_WR)
    result = run([PYTHON, "-c", POLICY], theirs)
    theirs.close()
    assert (result.status, result.signal, result.timed_out) == (0, None, False)
    uid = account()[0] if os.geteuid() == 0 else os.getuid()
    assert ours.recv(4096) == f"action=DUNNO uid={uid}\n\n".encode()


def test_hung_command_is_killed_at_the_time_limit(logged):
    ours, theirs = socket.socketpair()
    start = time.monotonic()
    result = run(["/bin/sh", "-c", "sleep 60 & sleep 60"], theirs, time_limit=1)
    assert time.monotonic() - start < 10
    assert result.timed_out and result.signal == 9
    report_result(result, "/bin/sh")
    out = logged()
    assert f"warning: /bin/sh: process id {result.pid}: command time limit exceeded" in out
    assert "warning: command /bin/sh killed by signal 9" in out
    theirs.close()
    ours.settimeout(5)
    assert ours.recv(10) == b""  # the whole group is gone: nobody holds the socket


def test_exit_status_and_stderr_are_logged(logged):
    ours, theirs = socket.socketpair()
    result = run(["/bin/sh", "-c", "echo 'no such \x01thing' >&2; printf tail >&2; exit 3"], theirs)
    assert result.status == 3
    report_result(result, "/bin/sh")
    out = logged()
    assert "warning: command /bin/sh: no such ?thing" in out
    assert "warning: command /bin/sh: tail" in out
    assert "warning: command /bin/sh exit status 3" in out


def test_stderr_is_bounded(logged):
    ours, theirs = socket.socketpair()
    script = "i=0; while [ $i -lt 300 ]; do echo line$i >&2; i=$((i+1)); done"
    result = run(["/bin/sh", "-c", script], theirs)
    assert result.status == 0
    out = logged()
    assert out.count("warning: command /bin/sh: line") == STDERR_LINES


def test_command_that_cannot_start_is_an_exec_error(logged):
    ours, theirs = socket.socketpair()
    result = run(["/nonexistent/policy"], theirs)
    assert result.exec_error and result.pid == 0
    report_result(result, "/nonexistent/policy")
    assert "warning: command /nonexistent/policy: cannot execute:" in logged()


def test_normal_exit_logs_nothing(logged):
    ours, theirs = socket.socketpair()
    result = run(["/bin/true"], theirs)
    report_result(result, "/bin/true")
    assert result.status == 0 and logged() == ""


def test_only_descriptors_0_1_2_reach_the_command():
    ours, theirs = socket.socketpair()
    extra = os.open("/dev/null", os.O_RDONLY)  # inheritable would leak without close_fds
    os.set_inheritable(extra, True)
    try:
        result = run(["/bin/sh", "-c", "ls /proc/self/fd >&1"], theirs)
    finally:
        os.close(extra)
    theirs.close()
    assert result.status == 0
    fds = sorted(int(x) for x in ours.recv(4096).split())
    assert fds[:3] == [0, 1, 2] and len(fds) <= 4  # ls's own directory descriptor
