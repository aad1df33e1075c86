"""Background log writing: every line arrives whole, in order, by flush()."""

import os
import re
import subprocess
import sys

import pytest

from mta import log
from mta.config import Config


def test_background_lines_arrive_whole_and_in_order(tmp_path):
    logfile = tmp_path / "maillog"
    (tmp_path / "main.cf").write_text(f"maillog_file = {logfile}\nmyhostname = h.example\n")
    log.init("test", Config(str(tmp_path)))
    log.start_background()
    for i in range(2000):
        log.info("line %d of the test %s", i, "x" * (i % 50))
    log.flush()
    lines = logfile.read_text().splitlines()
    assert len(lines) == 2000
    numbers = [int(re.search(r"line (\d+) of", line).group(1)) for line in lines]
    assert numbers == list(range(2000))
    assert all(re.match(r"\w{3} [ \d]\d \d\d:\d\d:\d\d h mta/test\[\d+\]: line ", x) for x in lines)


def test_after_flush_lines_are_written_directly(tmp_path):
    logfile = tmp_path / "maillog"
    (tmp_path / "main.cf").write_text(f"maillog_file = {logfile}\n")
    log.init("test", Config(str(tmp_path)))
    log.start_background()
    log.flush()
    log.info("direct")
    assert logfile.read_text().endswith("direct\n")


@pytest.fixture
def foreground_log():
    """Tests below log to stdout: afterwards this process logs as before."""
    yield
    log._state["stdout"] = False


def test_stdout_and_maillog_both_get_each_line(tmp_path, capfd, foreground_log):
    logfile = tmp_path / "maillog"
    (tmp_path / "main.cf").write_text(f"maillog_file = {logfile}\n")
    log.init("test", Config(str(tmp_path)), stdout=True)
    log.info("in both")
    line = f"mta/test[{os.getpid()}]: in both\n"
    assert logfile.read_text().endswith(line)
    assert capfd.readouterr().out.endswith(line)


def test_stdout_that_is_the_maillog_gets_each_line_once(tmp_path):
    logfile = tmp_path / "maillog"
    (tmp_path / "main.cf").write_text(f"maillog_file = {logfile}\n")
    code = (
        "from mta import log; from mta.config import Config; import sys; "
        f"log.init('test', Config({str(tmp_path)!r}), stdout=True); log.info('once')"
    )
    with open(logfile, "ab") as out:  # as a daemon master hands its children the log
        subprocess.run([sys.executable, "-c", code], stdout=out, check=True, timeout=30)
    assert logfile.read_text().count("once") == 1


def test_an_unwritable_maillog_leaves_the_foreground_on_stdout(tmp_path, capfd, foreground_log):
    (tmp_path / "main.cf").write_text(f"maillog_file = {tmp_path}/no/such/dir/maillog\n")
    log.init("test", Config(str(tmp_path)), stdout=True)
    log.info("still here")
    out = capfd.readouterr().out
    assert "warning: open " in out and "logging to stdout only" in out
    assert out.endswith("still here\n")
