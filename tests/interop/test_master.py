"""The master, end to end: real processes, real sockets, the mta command."""

from __future__ import annotations

import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time

import pytest

from tests.support.running import Instance, free_port, wait_for

pytestmark = [pytest.mark.interop, pytest.mark.timeout(60)]


@pytest.fixture
def make_instance(tmp_path):
    made: list[Instance] = []

    def make(master_cf: str, **main_extra) -> Instance:
        inst = Instance(tmp_path / f"i{len(made)}", master_cf, main_extra)
        made.append(inst)
        return inst

    yield make
    for inst in made:
        inst.stop()


class Client:
    """A line-oriented client of svc_echo."""

    def __init__(self, address) -> None:
        family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
        # the pid file can come a moment before the listeners (seen on a loaded
        # CI machine): a refused connection is tried again for a while
        deadline = time.monotonic() + 10
        while True:
            self.sock = socket.socket(family, socket.SOCK_STREAM)
            self.sock.settimeout(10)
            try:
                self.sock.connect(address)
                break
            except (ConnectionRefusedError, FileNotFoundError):
                self.sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.file = self.sock.makefile("rwb")

    def hello(self) -> tuple[int, int, str]:
        words = self.file.readline().split()
        assert words and words[0] == b"hello", words
        return int(words[1]), int(words[2]), words[3].decode()

    def echo(self, text: str) -> str:
        self.file.write(text.encode() + b"\n")
        self.file.flush()
        return self.file.readline().decode().rstrip("\n")

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def echo_cf(port: int, extra: str = "") -> str:
    return f"127.0.0.1:{port} inet n - n - - services.svc_echo\n" + extra


# ---------------------------------------------------------------- life cycle
def test_start_status_stop(make_instance):
    inst = make_instance(echo_cf(free_port()))
    r = inst.mta("start")
    assert r.returncode == 0, r.stderr
    assert "mta start: starting the mail system" in r.stderr
    pid = inst.master_pid()
    r = inst.mta("status")
    assert r.returncode == 0
    assert f"the mail system is running: PID: {pid}" in r.stderr
    assert "daemon started -- version" in inst.log()
    r = inst.mta("stop")
    assert r.returncode == 0, r.stderr
    assert inst.master_pid() is None
    assert "terminating on signal 15" in inst.log()
    r = inst.mta("status")
    assert r.returncode == 1
    assert "the mail system is not running" in r.stderr


def test_second_start_is_refused(make_instance):
    inst = make_instance(echo_cf(free_port()))
    assert inst.mta("start").returncode == 0
    r = inst.mta("start")
    assert r.returncode == 1
    assert "fatal: the mail system is already running" in r.stderr
    direct = subprocess.run(
        [sys.executable, "-m", "mta.master", "-c", inst.dir, "-f"],
        env=inst.env,
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert direct.returncode == 1
    assert "already running" in direct.stdout


def test_stop_and_reload_when_not_running_fail(make_instance):
    inst = make_instance(echo_cf(free_port()))
    for command in ("stop", "reload", "abort"):
        r = inst.mta(command)
        assert r.returncode == 1
        assert "fatal: the mail system is not running" in r.stderr


def test_check_creates_the_queue_tree_with_modes(make_instance):
    inst = make_instance(echo_cf(free_port()))
    r = inst.mta("check")
    assert r.returncode == 0, r.stderr
    expected = {
        "maildrop": 0o730,
        "incoming": 0o700,
        "active": 0o700,
        "deferred": 0o700,
        "hold": 0o700,
        "corrupt": 0o700,
        "bounce": 0o700,
        "defer": 0o700,
        "trace": 0o700,
        "flush": 0o700,
        "saved": 0o700,
        "private": 0o700,
        "public": 0o710,
        "pid": 0o755,
    }
    for name, mode in expected.items():
        st = os.stat(os.path.join(inst.queue, name))
        assert stat.S_ISDIR(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == mode, name
    assert stat.S_IMODE(os.stat(os.path.join(inst.top, "data")).st_mode) == 0o700


def test_check_fixes_a_wrong_mode_with_a_warning(make_instance):
    inst = make_instance(echo_cf(free_port()))
    assert inst.mta("check").returncode == 0
    os.chmod(os.path.join(inst.queue, "incoming"), 0o755)
    r = inst.mta("check")
    assert r.returncode == 0
    assert "mta check: warning: bad mode 0755 (expected 0700):" in r.stderr
    assert stat.S_IMODE(os.stat(os.path.join(inst.queue, "incoming")).st_mode) == 0o700


def test_bad_master_cf_is_one_line_with_file_and_line(make_instance):
    inst = make_instance(echo_cf(free_port(), "broken unix - - n\n"))
    r = inst.mta("start")
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert re.match(r"mta start: fatal: .*master\.cf, line 2: ", lines[0]), lines[0]
    assert "Traceback" not in r.stderr
    assert inst.master_pid() is None


# ---------------------------------------------------------------- serving
def test_service_answers_on_inet_and_unix_through_inherited_listeners(make_instance):
    port = free_port()
    inst = make_instance(echo_cf(port, "echo unix - - n - - services.svc_echo\n"))
    assert inst.mta("start").returncode == 0
    c = Client(("127.0.0.1", port))
    pid, _, name = c.hello()
    assert name == f"127.0.0.1:{port}"
    assert c.echo("over inet") == "over inet"
    u = Client(os.path.join(inst.queue, "private", "echo"))
    upid, _, uname = u.hello()
    assert uname == "echo"
    assert u.echo("over unix") == "over unix"
    assert stat.S_IMODE(os.stat(os.path.join(inst.queue, "private", "echo")).st_mode) == 0o600
    assert pid != upid
    assert pid in inst.children(f"127.0.0.1:{port}")
    c.close()
    u.close()


def test_unavailable_program_is_skipped_and_the_rest_runs(make_instance):
    from mta.master import registry

    missing = [
        p
        for p in sorted(registry.POSTFIX_PROGRAMS)
        if registry.resolve_command(p)[1].endswith("is not available yet")
    ]
    if not missing:
        pytest.skip("every Postfix program is available")
    port = free_port()
    inst = make_instance(echo_cf(port, f"{free_port()} inet n - n - - {missing[0]}\n"))
    assert inst.mta("start").returncode == 0
    assert re.search(
        rf"warning: service \d+/inet: command {missing[0]} is not available yet; skipped",
        inst.log(),
    )
    c = Client(("127.0.0.1", port))
    assert c.hello()[2] == f"127.0.0.1:{port}"
    c.close()


def test_handler_exception_is_logged_and_the_process_survives(make_instance):
    port = free_port()
    inst = make_instance(echo_cf(port))
    assert inst.mta("start").returncode == 0
    c = Client(("127.0.0.1", port))
    pid, _, _ = c.hello()
    c.file.write(b"RAISE\n")
    c.file.flush()
    assert c.file.readline() == b""  # that client is closed
    inst.wait_log(rf"mta/echo\[{pid}\]: warning: .*RuntimeError: asked to fail")
    c2 = Client(("127.0.0.1", port))
    assert c2.hello()[0] == pid
    c2.close()


def test_killed_child_is_logged_and_replaced(make_instance):
    port = free_port()
    inst = make_instance(echo_cf(port))
    assert inst.mta("start").returncode == 0
    c = Client(("127.0.0.1", port))
    pid, _, _ = c.hello()
    assert c.echo("x") == "x"
    os.kill(pid, signal.SIGKILL)
    inst.wait_log(rf"warning: process services\.svc_echo pid {pid} killed by signal 9")
    c.close()
    c2 = Client(("127.0.0.1", port))
    pid2, _, _ = c2.hello()
    assert pid2 != pid
    assert c2.echo("y") == "y"
    c2.close()
    assert "throttling" not in inst.log()


def test_crashing_service_is_throttled_and_others_are_unaffected(make_instance):
    good, bad = free_port(), free_port()
    inst = make_instance(echo_cf(good, f"127.0.0.1:{bad} inet n - n - - services.svc_crash\n"))
    assert inst.mta("start").returncode == 0
    crash = socket.create_connection(("127.0.0.1", bad), timeout=5)
    inst.wait_log(r"warning: process services\.svc_crash pid \d+ exit status 3")
    inst.wait_log(r"warning: services\.svc_crash: bad command startup -- throttling")
    c = Client(("127.0.0.1", good))
    assert c.hello()[2] == f"127.0.0.1:{good}"
    assert c.echo("still here") == "still here"
    time.sleep(1.0)  # the queued client would restart it at once if not throttled
    assert len(re.findall(r"svc_crash pid \d+ exit status", inst.log())) == 1
    crash.close()
    c.close()


def test_throttled_service_recovers_by_itself(make_instance):
    bad = free_port()
    inst = make_instance(
        f"127.0.0.1:{bad} inet n - n - - services.svc_crash\n", service_throttle_time="1s"
    )
    assert inst.mta("start").returncode == 0
    crash = socket.create_connection(("127.0.0.1", bad), timeout=5)
    inst.wait_log(r"bad command startup -- throttling", count=2, timeout=8)
    crash.close()


def test_maxproc_is_honoured(make_instance):
    port = free_port()
    inst = make_instance(f"127.0.0.1:{port} inet n - n - 3 services.svc_echo single\n")
    assert inst.mta("start").returncode == 0
    clients = [Client(("127.0.0.1", port)) for _ in range(3)]
    pids = {c.hello()[0] for c in clients}
    assert len(pids) == 3
    extra = [Client(("127.0.0.1", port)) for _ in range(2)]  # wait in the backlog
    time.sleep(1.0)
    assert len(inst.children(f"127.0.0.1:{port}")) == 3
    assert 'has reached its process limit "3"' in inst.log()
    clients[0].close()
    assert extra[0].hello()[0] in pids
    for c in clients[1:] + extra:
        c.close()


def test_wakeup_triggers_arrive_periodically(make_instance, tmp_path):
    out = tmp_path / "triggers"
    inst = make_instance(f"trig unix - - n 1 1 services.svc_trigger {out}\n")
    assert inst.mta("start").returncode == 0
    assert wait_for(lambda: out.exists() and out.read_text().count(" W\n") >= 3, 6)
    lines = out.read_text().splitlines()
    assert len({line.split()[0] for line in lines}) == 1  # one process takes them all


def test_conditional_wakeup_waits_for_use(make_instance, tmp_path):
    out = tmp_path / "triggers"
    inst = make_instance(f"trig unix - - n 1? 1 services.svc_trigger {out}\n")
    assert inst.mta("start").returncode == 0
    time.sleep(1.6)
    assert not out.exists() or out.read_text() == ""
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(os.path.join(inst.queue, "private", "trig"))
        s.sendall(b"kick")
    assert wait_for(lambda: out.exists() and " W" in out.read_text(), 4)
    assert " kick" in out.read_text()


def test_reload_adds_a_service_and_keeps_an_old_session(make_instance):
    port, port2 = free_port(), free_port()
    inst = make_instance(echo_cf(port))
    assert inst.mta("start").returncode == 0
    old = Client(("127.0.0.1", port))
    old_pid, _, _ = old.hello()
    inst.write_master_cf(
        f"127.0.0.1:{port} inet n - n - - services.svc_echo -o max_idle=50s\n"
        f"127.0.0.1:{port2} inet n - n - - services.svc_echo\n"
    )
    r = inst.mta("reload")
    assert r.returncode == 0
    assert "refreshing the mail system" in r.stderr
    inst.wait_log(r"mta/master\[\d+\]: reload -- version \S+, configuration " + re.escape(inst.dir))
    new = Client(("127.0.0.1", port2))
    assert new.hello()[2] == f"127.0.0.1:{port2}"
    again = Client(("127.0.0.1", port))
    again_pid, _, _ = again.hello()
    assert again_pid != old_pid  # the changed service runs new processes
    assert old.echo("still served") == "still served"  # the retiring one finishes
    old.close()
    assert wait_for(lambda: not os.path.exists(f"/proc/{old_pid}/cmdline"), 5)
    new.close()
    again.close()


def test_reload_with_a_bad_master_cf_keeps_the_old_configuration(make_instance):
    port = free_port()
    inst = make_instance(echo_cf(port))
    assert inst.mta("start").returncode == 0
    inst.write_master_cf("oops inet n - n\n")
    r = inst.mta("reload")
    assert r.returncode == 1  # refused: the master is not signalled
    assert re.match(r"mta reload: fatal: .*master\.cf, line 1: ", r.stderr), r.stderr
    os.kill(inst.master_pid(), signal.SIGHUP)  # a reload that skips "mta reload"
    inst.wait_log(r"error: reload failed, keeping the old configuration: .*master\.cf, line 1")
    c = Client(("127.0.0.1", port))
    assert c.hello()[2] == f"127.0.0.1:{port}"
    c.close()


def test_stop_waits_for_a_busy_child(make_instance):
    port = free_port()
    inst = make_instance(echo_cf(port))
    assert inst.mta("start").returncode == 0
    c = Client(("127.0.0.1", port))
    pid, _, _ = c.hello()
    stopper = inst.popen("stop", stderr=subprocess.PIPE)
    time.sleep(1.0)
    assert stopper.poll() is None  # still waiting for the session
    assert c.echo("finishing") == "finishing"
    c.close()
    assert stopper.wait(10) == 0
    assert inst.master_pid() is None
    assert not os.path.exists(f"/proc/{pid}/cmdline")
    assert "killed by signal" not in inst.log()


def test_abort_stops_at_once(make_instance):
    port = free_port()
    inst = make_instance(echo_cf(port))
    assert inst.mta("start").returncode == 0
    c = Client(("127.0.0.1", port))
    pid, _, _ = c.hello()
    started = time.monotonic()
    r = inst.mta("abort")
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - started < 5
    assert inst.master_pid() is None
    assert wait_for(lambda: not os.path.exists(f"/proc/{pid}/cmdline"), 5)
    c.close()


def test_start_fg_logs_to_stdout_and_maillog_and_stops_on_sigint(make_instance):
    port = free_port()
    inst = make_instance(echo_cf(port))
    proc = inst.popen("start-fg", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert wait_for(lambda: inst.master_pid(), 10)
        c = Client(("127.0.0.1", port))
        pid, _, _ = c.hello()
        c.file.write(b"RAISE\n")  # the service logs a warning
        c.file.flush()
        assert c.file.readline() == b""
        c.close()
        inst.wait_log(rf"mta/echo\[{pid}\]: warning: ")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    # maillog_file is whole in the foreground too: the master's and the service's
    # lines are on stdout and in the log, each once
    log = inst.log()
    for pattern in (
        r"mta/master\[\d+\]: daemon started -- version",
        rf"mta/echo\[{pid}\]: warning: .*RuntimeError: asked to fail",
        r"mta/master\[\d+\]: terminating on signal 2",
    ):
        assert len(re.findall(pattern, out)) == 1, (pattern, out)
        assert len(re.findall(pattern, log)) == 1, (pattern, log)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_unprivileged_service_runs_as_mail_owner(make_instance):
    import pwd

    nobody = pwd.getpwnam("nobody")
    p_unpriv, p_priv = free_port(), free_port()
    inst = make_instance(
        f"127.0.0.1:{p_unpriv} inet n - n - - services.svc_echo\n"
        f"127.0.0.1:{p_priv} inet n n n - - services.svc_echo\n",
        mail_owner="nobody",
    )
    r = inst.mta("start")
    assert r.returncode == 0, r.stderr
    a = Client(("127.0.0.1", p_unpriv))
    assert a.hello()[1] == nobody.pw_uid
    b = Client(("127.0.0.1", p_priv))
    assert b.hello()[1] == 0
    assert os.stat(os.path.join(inst.queue, "incoming")).st_uid == nobody.pw_uid
    assert os.stat(os.path.join(inst.queue, "pid")).st_uid == 0
    a.close()
    b.close()


def test_wakeup_through_a_fifo(make_instance, tmp_path):
    out = tmp_path / "triggers"
    inst = make_instance(f"trig fifo n - n 1 1 services.svc_trigger {out}\n")
    assert inst.mta("start").returncode == 0
    fifo = os.path.join(inst.queue, "public", "trig")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert wait_for(lambda: out.exists() and out.read_text().count(" W\n") >= 2, 5)


def test_port_in_use_fails_start_with_the_reason_in_the_log(make_instance):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        inst = make_instance(echo_cf(port))
        r = inst.mta("start")
    assert r.returncode == 1
    # the reason is on the terminal, not only in the log
    why = f"bind 127.0.0.1 port {port}: Address already in use"
    assert f"mta start: fatal: mail system startup failed: {why}\n" in r.stderr
    assert f"error: bind 127.0.0.1 port {port}: Address already in use" in inst.log()
    assert inst.master_pid() is None


def test_unsupported_service_type_is_skipped(make_instance):
    port = free_port()
    inst = make_instance(echo_cf(port, "handoff unix-dgram - - n - - services.svc_echo\n"))
    assert inst.mta("start").returncode == 0
    inst.wait_log(
        r"service handoff/unix-dgram: service type unix-dgram is not supported yet; skipped"
    )
    c = Client(("127.0.0.1", port))
    assert c.hello()[2] == f"127.0.0.1:{port}"
    c.close()


def test_idle_process_exits_after_max_idle(make_instance):
    port = free_port()
    inst = make_instance(f"127.0.0.1:{port} inet n - n - - services.svc_echo -o max_idle=1s\n")
    assert inst.mta("start").returncode == 0
    c = Client(("127.0.0.1", port))
    pid, _, _ = c.hello()
    c.close()
    assert wait_for(lambda: not inst.children(f"127.0.0.1:{port}"), 5)
    assert "warning: process" not in inst.log()  # a normal exit
    c2 = Client(("127.0.0.1", port))
    assert c2.hello()[0] != pid
    c2.close()


def test_process_exits_after_max_use_clients(make_instance):
    port = free_port()
    inst = make_instance(f"127.0.0.1:{port} inet n - n - - services.svc_echo -o max_use=2\n")
    assert inst.mta("start").returncode == 0
    pids = []
    for _ in range(4):
        c = Client(("127.0.0.1", port))
        pids.append(c.hello()[0])
        c.close()
        wait_for(lambda: pids[-1] not in inst.children(f"127.0.0.1:{port}") or len(pids) % 2, 5)
    assert pids[0] == pids[1]
    assert pids[2] == pids[3]
    assert pids[1] != pids[2]


# ---------------------------------------------------------------- proxymap, end to end
def test_proxymap_answers_proxy_lookups_under_the_master(make_instance, tmp_path):
    table = tmp_path / "virtual"
    table.write_text("alice@example.org  alice@backend.example\n")
    spec = f"texthash:{table}"
    inst = make_instance(
        "proxymap unix - - n - - proxymap\n",
        proxy_read_maps=f"proxy:{spec}",
    )
    assert inst.mta("start").returncode == 0
    found = inst.mta("map", "-q", "ALICE@example.org", f"proxy:{spec}")
    assert (found.returncode, found.stdout) == (0, "alice@backend.example\n"), found.stderr
    missing = inst.mta("map", "-q", "bob@example.org", f"proxy:{spec}")
    assert (missing.returncode, missing.stdout) == (1, "")
    # a table that proxy_read_maps does not list is refused, not opened
    other = tmp_path / "other"
    other.write_text("k v\n")
    refused = inst.mta("map", "-q", "k", f"proxy:texthash:{other}")
    assert refused.returncode != 0 and "not approved" in refused.stderr
    assert wait_for(lambda: "mta/proxymap[" in inst.log())


def test_check_warns_when_mail_is_queued_but_nothing_delivers(make_instance):
    port = free_port()
    inst = make_instance(f"127.0.0.1:{port} inet n - n - - smtpd\n")
    r = inst.mta("check")
    assert r.returncode == 0, r.stderr
    assert "no qmgr service: accepted mail will stay in incoming/" in r.stderr
    inst.write_master_cf(f"127.0.0.1:{port} inet n - n - - smtpd\nqmgr fifo n - n 300 1 qmgr\n")
    r = inst.mta("check")
    assert r.returncode == 0 and "no qmgr service" not in r.stderr


def test_start_removes_stale_temporary_files_and_keeps_fresh_ones(make_instance):
    # what a crash between create and rename leaves: Postfix's start runs postsuper -p
    inst = make_instance(echo_cf(free_port()))
    assert inst.mta("check").returncode == 0
    old = time.time() - 2 * 3600
    stale = [
        os.path.join(inst.queue, "incoming", ".123.456.tmp"),
        os.path.join(inst.queue, "maildrop", ".77.88.tmp"),
        os.path.join(inst.queue, "deferred", "A", ".9.10.tmp"),
    ]
    fresh = os.path.join(inst.queue, "maildrop", ".99.100.tmp")  # a sendmail still writing
    for path in [*stale, fresh]:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(b"half a message")
    for path in stale:
        os.utime(path, (old, old))
    r = inst.mta("start")
    assert r.returncode == 0, r.stderr
    assert [p for p in stale if os.path.exists(p)] == []
    assert os.path.exists(fresh)
    log = inst.wait_log("removed stale temporary file", count=3)
    assert f"removed stale temporary file {stale[0]}" in log
