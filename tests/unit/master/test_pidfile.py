"""master.pid as a lock."""

import os

import pytest

from mta.master.pidfile import AlreadyRunning, PidLock, running_pid


def test_lock_writes_the_pid_padded(tmp_path):
    lock = PidLock(str(tmp_path / "master.pid"))
    lock.acquire()
    assert (tmp_path / "master.pid").read_bytes() == b"%10d\n" % os.getpid()
    lock.release()


def test_held_lock_names_the_running_master(tmp_path):
    path = str(tmp_path / "master.pid")
    lock = PidLock(path)
    lock.acquire()
    assert running_pid(path) == os.getpid()
    with pytest.raises(AlreadyRunning) as info:
        PidLock(path).acquire()
    assert info.value.args[0] == os.getpid()
    lock.release()


def test_release_removes_the_file(tmp_path):
    path = str(tmp_path / "master.pid")
    lock = PidLock(path)
    lock.acquire()
    lock.release()
    assert not os.path.exists(path)
    assert running_pid(path) is None


def test_stale_file_without_lock_is_not_running(tmp_path):
    path = tmp_path / "master.pid"
    path.write_text("     12345\n")
    assert running_pid(str(path)) is None
    lock = PidLock(str(path))
    lock.acquire()  # a stale file does not stop a new master
    lock.release()
