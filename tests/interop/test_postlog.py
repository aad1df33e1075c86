"""mta log (postlog): lines in maillog form, tag, priority, stdin."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import pytest

pytestmark = pytest.mark.interop

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
LINE = r"^\w{3} [ \d]\d \d\d:\d\d:\d\d \S+ "


@pytest.fixture
def conf(tmp_path):
    (tmp_path / "main.cf").write_text(
        f"maillog_file = {tmp_path}/maillog\nqueue_directory = {tmp_path}/spool\n"
    )
    (tmp_path / "master.cf").write_text("")
    return tmp_path


def run_log(conf, *args, stdin=None):
    env = dict(os.environ, PYTHONPATH=ROOT)
    env.pop("MTA_LOG_STDOUT", None)
    return subprocess.run(
        [sys.executable, "-m", "mta", "log", "-c", str(conf), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=20,
    )


def log_lines(conf):
    return (conf / "maillog").read_text().splitlines()


def test_text_is_logged_with_the_postlog_tag(conf):
    r = run_log(conf, "backup", "finished")
    assert r.returncode == 0, r.stderr
    (line,) = log_lines(conf)
    assert re.match(LINE + r"mta/postlog\[\d+\]: backup finished$", line), line


def test_priority_prefixes_the_text(conf):
    for prio in ("warn", "err", "fatal", "panic", "info"):
        assert run_log(conf, "-p", prio, "x").returncode == 0
    texts = [line.split("]: ", 1)[1] for line in log_lines(conf)]
    assert texts == ["warning: x", "error: x", "fatal: x", "panic: x", "x"]


def test_tag_replaces_the_whole_tag(conf):
    assert run_log(conf, "-i", "-t", "backup/cron", "done").returncode == 0
    (line,) = log_lines(conf)
    assert re.search(r" backup/cron\[\d+\]: done$", line), line


def test_each_stdin_line_is_one_log_line(conf):
    assert run_log(conf, stdin="one\ntwo\n").returncode == 0
    assert [line.split("]: ", 1)[1] for line in log_lines(conf)] == ["one", "two"]


def test_unknown_priority_is_a_usage_error(conf):
    r = run_log(conf, "-p", "loud", "x")
    assert r.returncode == 2
    assert "unknown priority: loud" in r.stderr
    assert not (conf / "maillog").exists()


def test_tail_shows_the_last_lines(conf):
    for i in range(15):
        assert run_log(conf, f"line {i}").returncode == 0
    r = run_log(conf, "--tail")
    assert r.returncode == 0, r.stderr
    assert [ln.split("]: ", 1)[1] for ln in r.stdout.splitlines()] == [
        f"line {i}" for i in range(5, 15)
    ]
    r = run_log(conf, "--tail", "2")
    assert [ln.split("]: ", 1)[1] for ln in r.stdout.splitlines()] == ["line 13", "line 14"]


def test_follow_shows_new_lines_until_interrupted(conf):
    assert run_log(conf, "before").returncode == 0
    env = dict(os.environ, PYTHONPATH=ROOT)
    env.pop("MTA_LOG_STDOUT", None)
    follower = subprocess.Popen(
        [sys.executable, "-m", "mta", "log", "-c", str(conf), "-f"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert follower.stdout.readline().endswith("]: before\n")
        assert run_log(conf, "-p", "warn", "after").returncode == 0
        assert follower.stdout.readline().endswith("]: warning: after\n")
    finally:
        follower.send_signal(signal.SIGINT)
        _, err = follower.communicate(timeout=10)
    assert follower.returncode == 130  # as tail -f ends on ^C
    assert "Traceback" not in err, err


def test_reading_a_log_that_goes_to_syslog_says_so(tmp_path):
    (tmp_path / "main.cf").write_text(f"queue_directory = {tmp_path}/spool\n")
    (tmp_path / "master.cf").write_text("")
    r = run_log(tmp_path, "--tail")
    assert r.returncode == 1
    assert "mta log: fatal: maillog_file is not set" in r.stderr


def test_text_and_tail_do_not_mix(conf):
    r = run_log(conf, "--tail", "3", "hello")
    assert r.returncode == 2
    assert "mta log: fatal: --tail and -f read the log" in r.stderr


def test_bare_command_on_a_terminal_prints_usage(conf):
    import pty

    controller, terminal = pty.openpty()
    try:
        env = dict(os.environ, PYTHONPATH=ROOT)
        env.pop("MTA_LOG_STDOUT", None)
        r = subprocess.run(
            [sys.executable, "-m", "mta", "log", "-c", str(conf)],
            stdin=terminal,
            capture_output=True,
            text=True,
            env=env,
            timeout=20,
        )
    finally:
        os.close(terminal)
        os.close(controller)
    assert r.returncode == 1
    assert r.stderr.startswith("usage: mta log")
    assert "mta log: fatal: no TEXT, and standard input is a terminal" in r.stderr
    assert not (conf / "maillog").exists()
