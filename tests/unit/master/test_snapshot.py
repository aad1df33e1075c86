"""A child takes the live configuration when it validates, else the master's snapshot."""

import os
import subprocess
import sys

import pytest

import mta
from mta.config import ConfigError
from mta.master.mail_server import ServiceArgs, service_config
from mta.master.snapshot import SNAPSHOT_ENV, load_snapshot, read_config, write_snapshot

GOOD_MAIN = "message_size_limit = 2000\n"
MASTER_CF = "smtp inet n - n - - smtpd\nqmgr fifo n - n 300 1 qmgr\n"


@pytest.fixture
def instance(tmp_path, monkeypatch):
    """A configuration directory whose master took GOOD_MAIN and MASTER_CF."""
    conf = tmp_path / "etc"
    conf.mkdir()
    (conf / "main.cf").write_text(f"queue_directory = {tmp_path}/spool\n" + GOOD_MAIN)
    (conf / "master.cf").write_text(MASTER_CF)
    os.makedirs(tmp_path / "spool" / "pid")
    cfg, main_text, master_text = read_config(str(conf))
    snapshot = write_snapshot(cfg, main_text, master_text)
    monkeypatch.setenv(SNAPSHOT_ENV, snapshot)
    return conf, snapshot


def args(conf, **overrides) -> ServiceArgs:
    return ServiceArgs(name="smtp", type="inet", config_dir=str(conf), overrides=overrides)


def test_the_snapshot_holds_what_the_master_read(instance, tmp_path):
    conf, snapshot = instance
    assert snapshot == str(tmp_path / "spool" / "pid" / "config")
    assert (tmp_path / "spool" / "pid" / "config" / "master.cf").read_text() == MASTER_CF
    cfg = load_snapshot(snapshot, str(conf))
    assert cfg.get_size("message_size_limit") == 2000
    assert cfg.master_cf == os.path.join(snapshot, "master.cf")
    assert cfg.config_dir == str(conf)


def test_a_valid_live_configuration_is_taken_as_it_is(instance):
    conf, _ = instance
    with open(conf / "main.cf", "a") as f:
        f.write("message_size_limit = 3000\n")
    cfg, problem = service_config(args(conf), "smtpd")
    assert problem is None
    assert cfg.get_size("message_size_limit") == 3000
    assert cfg.master_cf == str(conf / "master.cf")


def test_a_bad_value_falls_back_to_the_snapshot(instance):
    conf, snapshot = instance
    with open(conf / "main.cf", "a") as f:
        f.write("message_size_limit = banana\n")
    cfg, problem = service_config(args(conf, smtpd_timeout="60s"), "smtpd")
    assert cfg.get_size("message_size_limit") == 2000
    assert cfg.get_time("smtpd_timeout") == 60  # the service's own overrides still apply
    assert problem == (
        f"{conf}/main.cf, line 3: parameter message_size_limit: "
        'bad size value "banana" (expected a number of bytes)'
    )


def test_a_broken_master_cf_falls_back_to_the_snapshot_of_both_files(instance):
    conf, snapshot = instance
    (conf / "master.cf").write_text("smtp inet n\n")
    cfg, problem = service_config(args(conf), "qmgr")
    assert cfg.master_cf == os.path.join(snapshot, "master.cf")
    assert problem.startswith(f"{conf}/master.cf, line 1: ")


def test_what_the_service_builds_is_checked_too(instance):
    conf, _ = instance
    with open(conf / "main.cf", "a") as f:
        f.write("smtpd_relay_restrictions = permit_mynetworks, reject_nobody\n")
    cfg, problem = service_config(args(conf), "smtpd")
    assert 'unknown restriction "reject_nobody"' in problem
    cfg, problem = service_config(args(conf), "qmgr")  # qmgr has no restriction lists
    assert problem is None


def test_without_a_snapshot_the_problem_is_raised(instance, monkeypatch):
    conf, _ = instance
    monkeypatch.delenv(SNAPSHOT_ENV)
    with open(conf / "main.cf", "a") as f:
        f.write("message_size_limit = banana\n")
    with pytest.raises(ConfigError, match="message_size_limit"):
        service_config(args(conf), "smtpd")


def test_a_configuration_error_after_start_is_one_fatal_line(tmp_path):
    script = (
        "import sys\n"
        "from mta import log\n"
        "from mta.config import ConfigError\n"
        "from mta.master.mail_server import _fatal_config_errors\n"
        "log.init('svc', None)\n"
        "sys.excepthook = _fatal_config_errors(sys.excepthook)\n"
        "raise ConfigError('bad thing', path='/etc/mta/main.cf', line=7, param='x')\n"
    )
    env = dict(
        os.environ, MTA_LOG_STDOUT="1", PYTHONPATH=os.path.dirname(os.path.dirname(mta.__file__))
    )
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert r.returncode == 1
    assert "Traceback" not in r.stdout + r.stderr
    assert "fatal: /etc/mta/main.cf, line 7: parameter x: bad thing" in r.stdout + r.stderr


def test_the_copy_is_no_more_readable_than_the_original(tmp_path):
    conf = tmp_path / "etc"
    conf.mkdir()
    (conf / "main.cf").write_text(f"queue_directory = {tmp_path}/spool\n")
    (conf / "master.cf").write_text(MASTER_CF)
    os.chmod(conf / "main.cf", 0o600)
    os.makedirs(tmp_path / "spool" / "pid")
    cfg, main_text, master_text = read_config(str(conf))
    snapshot = write_snapshot(cfg, main_text, master_text)
    assert os.stat(os.path.join(snapshot, "main.cf")).st_mode & 0o777 == 0o600
    assert os.stat(os.path.join(snapshot, "master.cf")).st_mode & 0o777 == 0o644
