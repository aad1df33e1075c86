"""Durable-commit kernel: compiled and reference versions do the same to real files."""

import os
import random

import pytest

from mta._speedups import durable_ref
from mta.queue import queue_file

TWINS = [pytest.param(durable_ref, id="ref")]
if queue_file.durable_c is not None:
    TWINS.append(pytest.param(queue_file.durable_c, id="c"))


def test_extension_loaded():
    if os.environ.get("MTA_NO_EXTENSIONS"):
        pytest.skip("pure build")
    assert queue_file.durable is queue_file.durable_c


def is_open(fd):
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


@pytest.mark.parametrize("mod", TWINS)
def test_seal_file_writes_header_closes_and_renames(mod, tmp_path):
    tmp, final = tmp_path / ".x.tmp", tmp_path / "final"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"....body")
    mod.seal_file(fd, b"HEAD", str(tmp), str(final))
    assert not is_open(fd)
    assert not tmp.exists()
    assert final.read_bytes() == b"HEADbody"


@pytest.mark.parametrize("mod", TWINS)
def test_seal_file_into_a_missing_directory_fails_and_still_closes(mod, tmp_path):
    tmp = tmp_path / ".x.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o600)
    with pytest.raises(FileNotFoundError):
        mod.seal_file(fd, b"H", str(tmp), str(tmp_path / "nodir" / "final"))
    assert not is_open(fd)
    assert tmp.read_bytes() == b"H"  # written and synced, left for the caller


@pytest.mark.parametrize("mod", TWINS)
def test_seal_file_on_a_bad_descriptor_names_the_file(mod, tmp_path):
    fd = os.open(tmp_path / "r", os.O_RDONLY | os.O_CREAT, 0o600)  # read-only: pwrite fails
    with pytest.raises(OSError) as info:
        mod.seal_file(fd, b"H", str(tmp_path / "r"), str(tmp_path / "final"))
    assert info.value.filename == str(tmp_path / "r")
    assert not is_open(fd)
    assert not (tmp_path / "final").exists()


@pytest.mark.parametrize("mod", TWINS)
def test_fsync_dir(mod, tmp_path):
    mod.fsync_dir(str(tmp_path))
    with pytest.raises(FileNotFoundError):
        mod.fsync_dir(str(tmp_path / "missing"))
    with pytest.raises(NotADirectoryError):
        (tmp_path / "f").write_bytes(b"")
        mod.fsync_dir(str(tmp_path / "f"))


@pytest.mark.parametrize("mod", TWINS)
def test_mark_done_at_marks_recipients_and_stops_at_a_wrong_offset(mod, tmp_path):
    f = tmp_path / "q"
    f.write_bytes(b"xRyDzR")
    assert mod.mark_done_at(str(f), [1, 3]) == -1
    assert f.read_bytes() == b"xDyDzR"
    assert mod.mark_done_at(str(f), [5, 2, 1]) == 2  # 5 marked, then 2 is no recipient
    assert f.read_bytes() == b"xDyDzD"
    assert mod.mark_done_at(str(f), [99]) == 99  # past the end
    assert mod.mark_done_at(str(f), []) == -1
    with pytest.raises(FileNotFoundError):
        mod.mark_done_at(str(tmp_path / "gone"), [1])


@pytest.mark.skipif(queue_file.durable_c is None, reason="extension not built")
@pytest.mark.parametrize("seed", range(50))
def test_mark_done_at_c_agrees_with_ref(seed, tmp_path):
    rnd = random.Random(seed)
    data = bytes(rnd.choice(b"RDNx") for _ in range(rnd.randrange(1, 60)))
    offsets = [rnd.randrange(len(data) + 3) for _ in range(rnd.randrange(0, 8))]
    results = []
    for name, mod in (("ref", durable_ref), ("c", queue_file.durable_c)):
        f = tmp_path / name
        f.write_bytes(data)
        results.append((mod.mark_done_at(str(f), offsets), f.read_bytes()))
    assert results[0] == results[1]
