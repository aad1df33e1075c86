"""The package imports, and says in one line when compiled speedups are missing."""

import os
import shutil
import subprocess
import sys

import pytest

import mta
import mta._speedups as speedups

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(mta.__file__)))


def _pure_copy(tmp_path):
    """A copy of the mta source tree with every compiled module left out."""
    dst = tmp_path / "mta"
    shutil.copytree(
        os.path.dirname(mta.__file__),
        dst,
        ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__", "*.c"),
    )
    return str(tmp_path)


def _import_mta(path, **env):
    full = {k: v for k, v in os.environ.items() if k != "MTA_NO_EXTENSIONS"}
    full.update(env, PYTHONPATH=path)
    # -S: no site-packages, so an editable install's import hook cannot send
    # "import mta" back to the source tree; importing mta needs nothing from there.
    return subprocess.run(
        [sys.executable, "-S", "-c", f"import mta; assert mta.__file__.startswith({path!r})"],
        cwd=path,
        env=full,
        capture_output=True,
        text=True,
    )


def test_kernels_are_discovered_from_ref_modules():
    refs = sorted(
        f[: -len("_ref.py")]
        for f in os.listdir(os.path.dirname(speedups.__file__))
        if f.endswith("_ref.py")
    )
    assert speedups.KERNELS == refs


@pytest.mark.skipif(not speedups.KERNELS, reason="no kernels yet")
def test_missing_speedups_reported_in_one_line(tmp_path):
    result = _import_mta(_pure_copy(tmp_path))
    assert result.returncode == 0
    lines = result.stderr.splitlines()
    assert len(lines) == 1
    assert "compiled speedups missing" in lines[0]


def test_pure_build_is_silent(tmp_path):
    result = _import_mta(_pure_copy(tmp_path), MTA_NO_EXTENSIONS="1")
    assert result.returncode == 0
    assert result.stderr == ""


@pytest.mark.skipif(os.environ.get("MTA_NO_EXTENSIONS") == "1", reason="pure build requested")
def test_installed_build_has_every_kernel():
    assert speedups.MISSING == []
