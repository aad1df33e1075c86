"""Queue files: durable writes, reading back, marking done, damage detection."""

import os

import pytest

from mta.queue import rec_type as R
from mta.queue.queue_file import (
    QueueFileError,
    QueueFileWriter,
    Recipient,
    find_queue_file,
    iter_content,
    mark_done,
    move_to_corrupt,
    read_queue_file,
)


@pytest.fixture
def qdir(tmp_path):
    for name in ("incoming", "deferred", "corrupt"):
        (tmp_path / name).mkdir()
    return tmp_path


def write(qdir, content=b"Subject: t\r\n\r\nhello\r\n", queue="incoming", **kw):
    w = QueueFileWriter(str(qdir), queue, **kw)
    w.write_envelope(
        "sender@example.org",
        [
            Recipient(
                "one@example.net",
                orig="One@Example.NET",
                notify=R.DSN_NOTIFY_FAILURE,
                dsn_orcpt="rfc822;One@Example.NET",
            ),
            Recipient("two@example.net"),
        ],
        {"client_name": "mx.example.org", "client_address": "192.0.2.1", "protocol": "ESMTP"},
    )
    w.write_content(content)
    qid = w.commit()
    return qid, w.path


def test_envelope_reads_back(qdir):
    qid, path = write(qdir)
    msg = read_queue_file(path)
    assert msg.queue_id == qid
    assert msg.sender == "sender@example.org"
    assert msg.attrs == {
        "client_name": "mx.example.org",
        "client_address": "192.0.2.1",
        "protocol": "ESMTP",
    }
    one, two = msg.recipients
    assert (one.address, one.orig, one.notify, one.dsn_orcpt) == (
        "one@example.net",
        "One@Example.NET",
        R.DSN_NOTIFY_FAILURE,
        "rfc822;One@Example.NET",
    )
    assert (two.address, two.orig, two.notify) == ("two@example.net", "", 0)
    assert msg.content_size == len(b"Subject: t\r\n\r\nhello\r\n")


def test_content_reads_back_as_lines(qdir):
    _, path = write(qdir, b"A: b\r\n\r\nline one\nline two\r\nno end")
    assert list(iter_content(path)) == [b"A: b", b"", b"line one", b"line two", b"no end"]


def test_long_lines_come_back_whole(qdir):
    long = b"x" * 5000
    _, path = write(qdir, b"H: v\r\n\r\n" + long + b"\r\n", line_limit=1000)
    assert list(iter_content(path))[2] == long


def test_commit_leaves_only_the_final_file(qdir):
    qid, path = write(qdir)
    assert os.listdir(qdir / "incoming") == [qid]
    assert os.stat(path).st_mode & 0o777 == 0o600


def test_abort_leaves_nothing(qdir):
    with QueueFileWriter(str(qdir)) as w:
        w.write_envelope("a@b", [Recipient("c@d")])
        w.write_content(b"partial")
    assert os.listdir(qdir / "incoming") == []


def test_hashed_queue_puts_file_in_subdirectory(qdir):
    qid, path = write(qdir, queue="deferred", hash_depth=2)
    assert path == os.path.join(qdir, "deferred", qid[-1], qid[-2], qid)
    assert find_queue_file(str(qdir), qid, ("incoming", "deferred"), 2) == ("deferred", path)


def test_find_refuses_path_tricks(qdir):
    assert find_queue_file(str(qdir), "../incoming", ("incoming",)) is None


def test_mark_done_is_persistent_and_selective(qdir):
    _, path = write(qdir)
    first = read_queue_file(path).recipients[0]
    mark_done(path, [first.offset])
    assert [r.done for r in read_queue_file(path).recipients] == [True, False]


def test_mark_done_refuses_an_offset_that_is_no_recipient(qdir):
    _, path = write(qdir)
    with pytest.raises(QueueFileError, match="no recipient record"):
        mark_done(path, [0])


def test_extracted_recipients_follow_the_content(qdir):
    w = QueueFileWriter(str(qdir))
    w.write_envelope("a@b", [])
    w.write_content(b"To: x@y\r\n\r\nbody\r\n")
    w.add_recipient(Recipient("x@y"))
    w.commit()
    assert [r.address for r in read_queue_file(w.path).recipients] == ["x@y"]
    assert list(iter_content(w.path)) == [b"To: x@y", b"", b"body"]


@pytest.mark.parametrize("cut", [1, 10, 40, -1, -2])
def test_truncated_file_is_detected(qdir, cut):
    _, path = write(qdir)
    data = open(path, "rb").read()
    open(path, "wb").write(data[:cut])
    with pytest.raises(QueueFileError):
        read_queue_file(path)


def test_garbage_is_detected_and_moved_to_corrupt(qdir):
    path = qdir / "incoming" / "5BRdsX0QmDzJ9MV"
    path.write_bytes(b"\x00garbage\xff" * 10)
    with pytest.raises(QueueFileError):
        read_queue_file(str(path))
    moved = move_to_corrupt(str(qdir), str(path))
    assert moved == str(qdir / "corrupt" / "5BRdsX0QmDzJ9MV")
    assert not path.exists()


def test_every_single_byte_flip_is_an_error_or_a_readable_file(qdir):
    _, path = write(qdir)
    data = open(path, "rb").read()
    for i in range(len(data)):
        damaged = bytearray(data)
        damaged[i] ^= 0xFF
        open(path, "wb").write(damaged)
        try:
            read_queue_file(path)
        except QueueFileError:
            pass


def test_directory_fsyncs_are_shared_by_concurrent_commits(tmp_path):
    import threading
    import time

    from mta.queue.queue_file import DirSyncer

    syncer = DirSyncer(str(tmp_path))
    syncer.running = True  # as if an fsync that started earlier were still running
    threads = [threading.Thread(target=syncer.sync) for _ in range(10)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while syncer.requested < 10 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert syncer.fsyncs == 0 and syncer.done == 0  # nobody returns on the old fsync
    with syncer.cond:
        syncer.running = False
        syncer.cond.notify_all()
    for t in threads:
        t.join(10)
    assert syncer.requested == syncer.done == 10
    assert syncer.fsyncs == 1


def test_a_lone_commit_gets_its_own_fsync(tmp_path):
    from mta.queue.queue_file import DirSyncer

    syncer = DirSyncer(str(tmp_path))
    syncer.sync()
    syncer.sync()
    assert syncer.fsyncs == 2


def test_set_flags_rewrites_the_size_record_in_place(tmp_path):
    from mta.config import load_config
    from mta.queue.queue_file import iter_content, read_queue_file, set_flags
    from mta.queue.rec_type import QF_8BIT, QF_TRACE
    from tests.support.agent import queue_message
    from tests.support.instance import make_instance

    cfg = load_config(str(make_instance(tmp_path)))
    m = queue_message(cfg, ["a@x.example", "b@x.example"])
    before = open(m.path, "rb").read()
    set_flags(m.path, QF_TRACE | QF_8BIT)
    after = read_queue_file(m.path)
    assert after.flags == QF_TRACE | QF_8BIT
    assert [r.address for r in after.recipients] == ["a@x.example", "b@x.example"]
    assert list(iter_content(m.path, after)) == list(iter_content(m.path, m))
    assert len(open(m.path, "rb").read()) == len(before)
    set_flags(m.path, 0)
    assert open(m.path, "rb").read() == before  # the flags field was all that changed


@pytest.mark.skipif(os.geteuid() != 0, reason="only root writes queue files for another user")
def test_a_queue_file_written_as_root_belongs_to_the_owner_of_its_queue(tmp_path):
    # the local agent (root) forwards through the cleanup library; qmgr reads as mail_owner
    import pwd

    nobody = pwd.getpwnam("nobody")
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    os.chown(incoming, nobody.pw_uid, nobody.pw_gid)
    w = QueueFileWriter(str(tmp_path), "incoming")
    w.write_envelope(sender="a@x.example", recipients=[Recipient("b@y.example")])
    w.write_content(b"Subject: x\n\nbody\n")
    qid = w.commit()
    st = os.stat(incoming / qid)
    assert (st.st_uid, st.st_gid) == (nobody.pw_uid, nobody.pw_gid)
