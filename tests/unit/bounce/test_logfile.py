"""bounce.logfile: read_reasons() gives what read() and latest_by_recipient() give;
logs written as root belong to mail_owner."""

import os
import pwd

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mta.bounce import logfile
from mta.common.dsn import ACTION_DELAYED, ACTION_FAILED, RecipientStatus


def status(offset, reason, action=ACTION_DELAYED):
    return RecipientStatus("bob@x.example", offset, action, "4.4.1", reason)


def test_the_last_reason_of_each_recipient(tmp_path):
    qdir, qid = str(tmp_path), "5BRk4K3ZBvzvRh"
    logfile.append(qdir, "defer", qid, [status(90, "one"), status(120, "two")])
    logfile.append(qdir, "defer", qid, [status(90, "three\nfolded")])
    path = logfile.log_path(qdir, "defer", qid)
    assert logfile.read_reasons(path) == {90: "three folded", 120: "two"}


def test_no_log_no_reasons(tmp_path):
    assert logfile.read_reasons(str(tmp_path / "none")) == {}
    assert logfile.read_reasons(str(tmp_path)) == {}  # a directory: unreadable


junk = st.sampled_from([b"", b"garbage\n\n", b"offset=1\n\n", b"\n", b"action=x=y\n\n"])
entries = st.lists(
    st.tuples(
        st.integers(0, 3),
        st.text(max_size=5),
        st.sampled_from([ACTION_DELAYED, ACTION_FAILED]),
        junk,
    ),
    max_size=6,
)


@given(entries)
@settings(max_examples=200)
def test_read_reasons_agrees_with_read(tmp_path_factory, items):
    qdir = tmp_path_factory.mktemp("queue")
    (qdir / "defer").mkdir()
    path = qdir / "defer" / "5BRk4K3ZBvzvRh"
    data = b"".join(
        logfile.encode_entry(status(o, r, a)).replace(b"\n\n", b"\n\n" + j) for o, r, a, j in items
    )
    path.write_bytes(data)
    logged = logfile.read(str(qdir), "defer", path.name, 0)
    want = {o: st.reason for o, st in logfile.latest_by_recipient(logged).items()}
    assert logfile.read_reasons(str(path)) == want


@pytest.mark.skipif(os.geteuid() != 0, reason="only root writes logs for another user")
def test_a_log_written_as_root_belongs_to_the_owner_of_its_queue(tmp_path):
    # the privileged local agent writes bounce/defer logs that qmgr, as
    # mail_owner, must read and remove
    nobody = pwd.getpwnam("nobody")
    qdir, qid = str(tmp_path), "5BRk4K3ZBvzvRh"
    for kind in ("bounce", "defer"):
        os.mkdir(os.path.join(qdir, kind), 0o700)
        os.chown(os.path.join(qdir, kind), nobody.pw_uid, nobody.pw_gid)
    logfile.append(qdir, "bounce", qid, [status(90, "no such user", ACTION_FAILED)])
    logfile.append(qdir, "defer", qid, [status(90, "later")], hash_depth=2, hashed=("defer",))
    bounce = os.stat(logfile.log_path(qdir, "bounce", qid))
    assert (bounce.st_uid, bounce.st_gid) == (nobody.pw_uid, nobody.pw_gid)
    defer = logfile.log_path(qdir, "defer", qid, 2, ("defer",))
    for path in (defer, os.path.dirname(defer), os.path.dirname(os.path.dirname(defer))):
        st = os.stat(path)
        assert (st.st_uid, st.st_gid) == (nobody.pw_uid, nobody.pw_gid), path
