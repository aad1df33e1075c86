"""Background log writing: every line arrives whole, in order, by flush()."""

import re

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
