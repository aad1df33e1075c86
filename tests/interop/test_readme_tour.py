"""The README's short tour, run as written: the lines that need no running mail
system work with the embedded instance of a new user (HOME in a fresh directory)."""

from __future__ import annotations

import getpass
import os
import re
import stat
import subprocess
import sys

import pytest

from tests.support.running import ROOT

pytestmark = pytest.mark.interop

# tour lines that need no running mail system, found by how they begin
OFFLINE_LINES = (
    'echo "webmaster:',
    "newaliases",
    "(cd ~/.local/state/mta && mta lock",
    "mta --version",
)


def tour_lines() -> list[str]:
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    tour = text.split("## A short tour", 1)[1].split("\n## ", 1)[0]
    return [ln[4:] for ln in tour.splitlines() if ln.startswith("    ")]


@pytest.fixture
def newcomer(tmp_path):
    """A shell environment of a user who has never run mta: HOME is empty."""
    home = tmp_path / "home"
    bin_dir = tmp_path / "bin"
    home.mkdir()
    bin_dir.mkdir()
    programs = {
        "mta": "-m mta",
        "newaliases": "-c 'import sys; from mta.cli.sendmail import main; sys.exit(main(sys.argv[1:], \"newaliases\"))'",
    }
    for name, how in programs.items():
        path = bin_dir / name
        path.write_text(f'#!/bin/sh\nexec {sys.executable} {how} "$@"\n')
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    env = {k: v for k, v in os.environ.items() if k not in ("MTA_CONFIG_DIR", "XDG_STATE_HOME")}
    env.update(HOME=str(home), USER=getpass.getuser(), PYTHONPATH=ROOT)
    env["PATH"] = f"{bin_dir}:/usr/bin:/bin"
    return home, env


def run_line(line: str, env: dict, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-c", line], env=env, cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_the_offline_tour_lines_work_as_written(newcomer, tmp_path):
    home, env = newcomer
    lines = [ln for ln in tour_lines() if ln.startswith(OFFLINE_LINES)]
    assert len(lines) == len(OFFLINE_LINES), lines
    user = getpass.getuser()
    # the tour begins with "mta start", which creates the instance; "mta check"
    # (also in the tour) does the same without starting anything
    assert run_line("mta check", env, tmp_path).returncode == 0
    outputs = {}
    for line in lines:
        r = run_line(line, env, tmp_path)
        assert r.returncode == 0, (line, r.stderr)
        outputs[line.split()[0]] = r.stdout
    top = home / ".local" / "state" / "mta"
    # the lock line locked (and created) the user's mailbox in the instance
    assert (top / "mail" / user).exists()
    assert re.fullmatch(rf"0 mail/{re.escape(user)}\n", outputs["(cd"]), outputs["(cd"]
    assert outputs["mta"].startswith("mta ")
    # newaliases rebuilt the instance's alias database with the added line
    r = run_line(f"mta alias -q webmaster lmdb:{top}/aliases", env, tmp_path)
    assert r.stdout == f"{user}\n", r.stderr


def test_lock_takes_a_relative_file_from_the_current_directory(newcomer, tmp_path):
    home, env = newcomer
    work = tmp_path / "work"
    work.mkdir()
    r = run_line("mta lock box cat box", env, work)
    assert r.returncode == 0, r.stderr
    assert (work / "box").exists()
    assert not (home / ".local" / "state" / "mta" / "box").exists()
