"""mta lock (postlock): runs a command with the mailbox locked; exit statuses."""

import fcntl
import os
import subprocess
import sys

import pytest

from mta.cli import lock as lock_cli


@pytest.fixture
def cdir(tmp_path):
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "main.cf").write_text("deliver_lock_attempts = 2\ndeliver_lock_delay = 0\n")
    return str(conf)


def test_command_runs_while_dotlock_held_and_status_passes_through(cdir, tmp_path):
    box = tmp_path / "box"
    probe = f"test -e {box}.lock && exit 3"
    assert lock_cli.main(["-c", cdir, str(box), "sh", "-c", probe], "lock") == 3
    assert box.exists() and not (tmp_path / "box.lock").exists()


def test_fcntl_lock_is_held_during_command(cdir, tmp_path):
    box = tmp_path / "box"
    check = (
        "import fcntl,sys; f=open(sys.argv[1],'a')\n"
        "try:\n fcntl.lockf(f, fcntl.LOCK_EX|fcntl.LOCK_NB)\nexcept OSError:\n sys.exit(9)\n"
    )
    rc = lock_cli.main(
        ["-c", cdir, "-l", "fcntl", str(box), sys.executable, "-c", check, str(box)], "lock"
    )
    assert rc == 9


def test_held_lock_gives_ex_tempfail(cdir, tmp_path, capsys):
    box = tmp_path / "box"
    (tmp_path / "box.lock").write_text("")
    assert lock_cli.main(["-c", cdir, "-l", "dotlock", str(box), "true"], "lock") == 75
    assert capsys.readouterr().err.startswith("mta lock: fatal: unable to lock")


def test_flock_conflict_from_other_process(cdir, tmp_path):
    box = tmp_path / "box"
    box.write_text("")
    with open(box) as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        rc = subprocess.run(
            [sys.executable, "-m", "mta", "lock", "-c", cdir, "-l", "flock", str(box), "true"],
            capture_output=True,
            env={**os.environ, "PYTHONPATH": os.getcwd()},
        ).returncode
    assert rc == 75


def test_bad_style_and_missing_command_are_usage_errors(cdir, tmp_path, capsys):
    assert lock_cli.main(["-c", cdir, "-l", "nfs", str(tmp_path / "b"), "true"], "lock") == 64
    assert "unknown lock style" in capsys.readouterr().err
    assert lock_cli.main(["-c", cdir, str(tmp_path / "b")], "lock") == 64


def test_unknown_command_is_tempfail(cdir, tmp_path):
    assert lock_cli.main(["-c", cdir, str(tmp_path / "b"), "/no/such/prog"], "lock") == 75
