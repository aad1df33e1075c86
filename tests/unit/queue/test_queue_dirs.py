"""make_queue_dirs(): every hashed level a commit makes is fsynced into its parent."""

from __future__ import annotations

import os

from mta.queue import queue_file
from mta.queue.queue_file import QueueFileWriter, Recipient, make_queue_dirs, read_queue_file


def record_dir_syncs(monkeypatch) -> list[str]:
    """Record every directory fsync of queue_file (and still do it)."""
    synced: list[str] = []
    real = queue_file.fsync_dir

    def recording(path: str) -> None:
        synced.append(os.path.normpath(path))
        real(path)

    monkeypatch.setattr(queue_file, "fsync_dir", recording)
    return synced


def test_each_new_level_is_synced_into_its_parent(tmp_path, monkeypatch):
    synced = record_dir_syncs(monkeypatch)
    top = tmp_path / "deferred"
    top.mkdir()
    make_queue_dirs(str(top / "A" / "B"))
    assert (top / "A" / "B").is_dir()
    assert oct((top / "A").stat().st_mode & 0o777) == "0o700"
    # A's entry in deferred/, then B's entry in A/, in that order
    assert synced == [str(top), str(top / "A")]


def test_an_existing_directory_costs_nothing(tmp_path, monkeypatch):
    synced = record_dir_syncs(monkeypatch)
    (tmp_path / "q" / "A").mkdir(parents=True)
    make_queue_dirs(str(tmp_path / "q" / "A"))
    assert synced == []
    make_queue_dirs(str(tmp_path / "q" / "A" / "C"))
    assert synced == [str(tmp_path / "q" / "A")]


def test_commit_into_a_new_depth_2_directory_syncs_both_parents(tmp_path, monkeypatch):
    qdir = tmp_path / "spool"
    (qdir / "deferred").mkdir(parents=True)
    synced = record_dir_syncs(monkeypatch)
    w = QueueFileWriter(str(qdir), "deferred", hash_depth=2, hashed=("deferred",))
    w.write_envelope(sender="a@x.example", recipients=[Recipient("b@y.example")])
    w.write_content(b"Subject: x\n\nbody\n")
    qid = w.commit()
    first, second = qid[-1], qid[-2]
    path = qdir / "deferred" / first / second / qid
    assert read_queue_file(str(path)).sender == "a@x.example"
    assert str(qdir / "deferred") in synced  # the parent of the new first level
    assert str(qdir / "deferred" / first) in synced  # ... and of the second
