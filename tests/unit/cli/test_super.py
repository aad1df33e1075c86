"""mta super (postsuper): delete, hold, release, requeue, purge, structure check."""

import io
import os
import time
from pathlib import Path

import pytest

from mta.bounce import logfile
from mta.cli import super as su
from mta.common.dsn import ACTION_DELAYED, RecipientStatus
from mta.config import load_config
from mta.queue import rec_type as R
from mta.queue.queue_file import (
    QueueFileWriter,
    Recipient,
    mark_done,
    read_content,
    read_queue_file,
)
from mta.queue.showq import iter_entries
from tests.support.agent import queue_message
from tests.support.instance import make_instance


@pytest.fixture
def inst(tmp_path):
    cdir = make_instance(tmp_path)
    cfg = load_config(str(cdir))
    return str(cdir), cfg


def where(cfg) -> dict[str, str]:
    return {e.queue_id: e.queue_name for e in iter_entries(cfg)}


def run(cdir, *args, stdin=""):
    old = su.sys.stdin
    su.sys.stdin = io.StringIO(stdin)
    try:
        return su.main(["-c", cdir, *args])
    finally:
        su.sys.stdin = old


def defer_log(cfg, msg, reason="busy"):
    st = RecipientStatus.of(msg.recipients[0], ACTION_DELAYED, "4.0.0", reason)
    logfile.append(cfg.get("queue_directory"), "defer", msg.queue_id, [st])


def test_delete_one_and_its_logs(inst, capsys):
    cdir, cfg = inst
    a = queue_message(cfg, ["a@x.example"], queue="deferred")
    b = queue_message(cfg, ["b@x.example"], queue="deferred")
    defer_log(cfg, a)
    assert run(cdir, "-d", a.queue_id) == 0
    assert where(cfg) == {b.queue_id: "deferred"}
    assert logfile.read(cfg.get("queue_directory"), "defer", a.queue_id) == []
    assert "mta super: Deleted: 1 message\n" in capsys.readouterr().err
    log = (Path(cdir).parent / "maillog").read_text()
    assert f"{a.queue_id}: removed" in log


def test_delete_all_of_one_queue(inst, capsys):
    cdir, cfg = inst
    keep = queue_message(cfg, ["a@x.example"], queue="hold")
    for i in range(3):
        queue_message(cfg, [f"d{i}@x.example"], queue="deferred")
    assert run(cdir, "-d", "ALL", "deferred") == 0
    assert where(cfg) == {keep.queue_id: "hold"}
    assert "Deleted: 3 messages" in capsys.readouterr().err


def test_ids_from_stdin_take_the_first_word_and_skip_unknown_ones(inst, capsys):
    cdir, cfg = inst
    a = queue_message(cfg, ["a@x.example"], queue="deferred")
    b = queue_message(cfg, ["b@x.example"], queue="incoming")
    stdin = f"{a.queue_id}* 1234 Sun Nov 29\n\n{b.queue_id}\n5BRk4K3ZBvzvRh\n../etc/passwd\n"
    assert run(cdir, "-d", "-", stdin=stdin) == 0
    assert where(cfg) == {}
    err = capsys.readouterr().err
    assert "Deleted: 2 messages" in err
    assert "invalid mail queue id: ../etc/passwd" in err


def test_hold_and_release(inst, capsys):
    cdir, cfg = inst
    m = queue_message(cfg, ["a@x.example"], queue="deferred")
    os.utime(m.path, (time.time(), time.time() + 3600))
    assert run(cdir, "-h", m.queue_id) == 0
    assert where(cfg) == {m.queue_id: "hold"}
    assert run(cdir, "-h", m.queue_id) == 0  # already held: nothing to do
    assert run(cdir, "-H", "ALL") == 0
    assert where(cfg) == {m.queue_id: "deferred"}
    path = su.Queue(cfg).path("deferred", m.queue_id)
    assert os.stat(path).st_mtime <= time.time()  # due at once
    err = capsys.readouterr().err
    assert err.count("Placed on hold: 1 message") == 1
    assert "Released from hold: 1 message" in err


CONTENT = (
    b"Subject: old\nFrom: <sender@s.example>\nDate: Mon, 1 Jan 2024 00:00:00 +0000\n"
    b"Message-Id: <1@s.example>\n\nbody line\n"
)


def write_message(cfg, queue="deferred", when=None, attrs=None, body=None):
    """A queue file with DSN details: ORCPT and NOTIFY on the first recipient."""
    w = QueueFileWriter(cfg.get("queue_directory"), queue, when=when)
    rcpts = [
        Recipient("a@x.example", dsn_orcpt="rfc822;A@X.example", notify=R.DSN_NOTIFY_FAILURE),
        Recipient("done@x.example"),
        Recipient("c@x.example", orig="old-c@x.example"),
    ]
    w.write_envelope(
        "sender@s.example",
        rcpts,
        attrs if attrs is not None else {"protocol": "local", "ret": "HDRS", "envid": "env-7"},
        warn_time=(when or time.time()) + 7200,
    )
    w.write_content(body or CONTENT)
    qid = w.commit()
    path = su.Queue(cfg).path(queue, qid)
    msg = read_queue_file(path)
    mark_done(path, [msg.recipients[1].offset])
    return read_queue_file(path)


def only_message(cfg):
    (entry,) = iter_entries(cfg)
    msg = read_queue_file(su.Queue(cfg).path(entry.queue_name, entry.queue_id))
    return entry.queue_name, msg


def test_requeue_makes_a_new_queue_file_with_the_same_envelope(inst, capsys):
    cdir, cfg = inst
    arrival = time.time() - 3600
    old = write_message(cfg, when=arrival)
    defer_log(cfg, old)
    assert run(cdir, "-r", old.queue_id) == 0
    assert "Requeued: 1 message" in capsys.readouterr().err
    queue, new = only_message(cfg)
    assert queue == "incoming" and new.queue_id != old.queue_id
    assert new.sender == "sender@s.example"
    assert int(new.arrival) == int(arrival) and int(new.warn_time) == int(old.warn_time)
    assert new.attrs["ret"] == "HDRS" and new.attrs["envid"] == "env-7"
    got = [(r.address, r.orig, r.dsn_orcpt, r.notify, r.done) for r in new.recipients]
    assert got == [
        ("a@x.example", "", "rfc822;A@X.example", R.DSN_NOTIFY_FAILURE, False),
        ("c@x.example", "old-c@x.example", "", 0, False),
    ]
    content, _ = read_content(new.path, new)
    head, _, rest = content.partition(b"\n\tid ")
    assert head.startswith(b"Received: by mx.test.example (") and b"from userid" in head
    assert rest.split(b"\n", 1)[1] == CONTENT
    assert logfile.read(cfg.get("queue_directory"), "defer", old.queue_id) == []
    log = (Path(cdir).parent / "maillog").read_text()
    assert (
        f"{new.queue_id}: uid={os.geteuid()} from=<sender@s.example> orig_id={old.queue_id}" in log
    )
    assert f"{old.queue_id}: requeued" in log


def test_requeue_applies_rewriting_configured_after_queueing(inst, capsys):
    cdir, cfg = inst
    old = write_message(cfg, queue="active")
    with open(os.path.join(cdir, "main.cf"), "a") as f:
        f.write("canonical_maps = inline:{ c@x.example=c@new.example }\n")
    assert run(cdir, "-r", "ALL") == 0
    queue, new = only_message(load_config(cdir))
    assert queue == "incoming" and new.queue_id != old.queue_id
    assert [(r.address, r.orig) for r in new.recipients] == [
        ("a@x.example", ""),
        ("c@new.example", "old-c@x.example"),
    ]


def test_requeue_refused_by_cleanup_puts_the_message_back(inst, capsys):
    cdir, cfg = inst
    old = write_message(cfg, queue="deferred")
    checks = Path(cdir) / "header_checks"
    checks.write_text("/^Subject: old/ REJECT no more\n")
    with open(os.path.join(cdir, "main.cf"), "a") as f:
        f.write(f"header_checks = regexp:{checks}\n")
    assert run(cdir, "-r", old.queue_id) == 0
    err = capsys.readouterr().err
    assert f"{old.queue_id}: cannot requeue: 5.7.1 no more; back in deferred" in err
    assert "Requeued" not in err
    assert where(cfg) == {old.queue_id: "deferred"}
    assert read_queue_file(old.path).recipients[1].done


def test_requeue_with_a_broken_table_stops_before_touching_anything(inst, capsys):
    cdir, cfg = inst
    old = write_message(cfg, queue="deferred")
    with open(os.path.join(cdir, "main.cf"), "a") as f:
        f.write("canonical_maps = inline:{ broken\n")
    assert run(cdir, "-r", old.queue_id) == 1
    assert "fatal: cannot requeue" in capsys.readouterr().err
    assert where(cfg) == {old.queue_id: "deferred"}


def test_requeue_leaves_maildrop_to_pickup(inst, capsys):
    cdir, cfg = inst
    m = queue_message(cfg, ["a@x.example"], queue="maildrop")
    assert run(cdir, "-r", "ALL") == 0
    assert where(cfg) == {m.queue_id: "maildrop"}
    assert "Requeued" not in capsys.readouterr().err


def test_purge_removes_only_old_temporary_files(inst):
    cdir, cfg = inst
    incoming = Path(cfg.get("queue_directory")) / "incoming"
    old, fresh = incoming / ".123.1.tmp", incoming / ".123.2.tmp"
    old.write_bytes(b"x")
    fresh.write_bytes(b"x")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    m = queue_message(cfg, ["a@x.example"], queue="incoming")
    assert run(cdir, "-p") == 0
    assert not old.exists() and fresh.exists()
    assert where(cfg) == {m.queue_id: "incoming"}


def test_structure_check_rehashes_and_moves_strangers_to_corrupt(inst):
    cdir, cfg = inst
    m = queue_message(cfg, ["a@x.example"], queue="deferred")
    wrong_dir = Path(cfg.get("queue_directory")) / "deferred" / "Q"
    wrong_dir.mkdir(exist_ok=True)
    if m.path != str(wrong_dir / m.queue_id):
        os.rename(m.path, wrong_dir / m.queue_id)
    stranger = Path(cfg.get("queue_directory")) / "incoming" / "not-a-queue-id"
    stranger.write_bytes(b"x")
    assert run(cdir, "-s") == 0
    assert where(cfg) == {m.queue_id: "deferred"}
    assert os.path.exists(su.Queue(cfg).path("deferred", m.queue_id))
    assert (Path(cfg.get("queue_directory")) / "corrupt" / "not-a-queue-id").exists()


def test_nothing_to_do_is_a_usage_error(inst):
    cdir, _ = inst
    with pytest.raises(SystemExit) as info:
        run(cdir)
    assert info.value.code == 2


def test_expire_marks_the_file_and_mailq_shows_it(inst, capsys):
    import json
    import stat

    from mta.cli import queue as queue_cli

    cdir, cfg = inst
    m = queue_message(cfg, ["a@x.example"], queue="deferred")
    os.utime(m.path, (time.time(), time.time() + 3600))
    held = queue_message(cfg, ["b@x.example"], queue="hold")
    assert run(cdir, "-e", m.queue_id) == 0
    assert os.stat(m.path).st_mode & stat.S_IXUSR
    assert os.stat(m.path).st_mtime <= time.time()  # due: qmgr takes it at once
    assert run(cdir, "-f", held.queue_id) == 0
    assert where(cfg) == {m.queue_id: "deferred", held.queue_id: "deferred"}
    assert "Force-expired: 1 message" in capsys.readouterr().err
    out = io.StringIO()
    queue_cli.list_queue(cfg, False, out)
    marked = [x for x in out.getvalue().splitlines() if x and x.split()[0].endswith("#")]
    assert len(marked) == 2
    out = io.StringIO()
    queue_cli.list_queue(cfg, True, out)
    assert all(json.loads(line)["forced_expire"] for line in out.getvalue().splitlines())
