"""A built wheel installs and imports with no compiler, every kernel compiled."""

import glob
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

pytestmark = [pytest.mark.interop, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    if shutil.which("gcc") is None and shutil.which("cc") is None:
        pytest.skip("no C compiler to build the wheel with")
    src = tmp_path_factory.mktemp("src")
    # Build from a copy so in-place build products never leak into the wheel.
    shutil.copytree(
        ROOT,
        src / "tree",
        ignore=shutil.ignore_patterns(
            ".git", "build", "dist", "*.egg-info", "__pycache__", "*.so", "*.c", ".benchmarks"
        ),
    )
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(out),
            str(src / "tree"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    wheels = glob.glob(str(out / "cymta-*.whl"))
    assert len(wheels) == 1
    return wheels[0]


def test_wheel_is_platform_specific(wheel):
    # A wheel carrying compiled kernels is tagged for one Python and platform.
    assert "-none-any" not in os.path.basename(wheel)


def test_wheel_imports_without_compiler(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), wheel],
        check=True,
    )
    env = {
        "PATH": "/nonexistent",  # no compiler, no build tools
        "CC": "/bin/false",
        "PYTHONPATH": str(target),
        "HOME": str(tmp_path),
    }
    code = "import mta, mta._speedups as s; assert not s.MISSING, s.MISSING; print(len(s.KERNELS))"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert int(result.stdout) >= 1
