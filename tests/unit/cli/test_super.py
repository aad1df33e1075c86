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


def test_requeue_moves_to_incoming_and_forgets_deferral_reasons(inst, capsys):
    cdir, cfg = inst
    m = queue_message(cfg, ["a@x.example"], queue="deferred")
    defer_log(cfg, m)
    assert run(cdir, "-r", m.queue_id) == 0
    assert where(cfg) == {m.queue_id: "incoming"}
    assert logfile.read(cfg.get("queue_directory"), "defer", m.queue_id) == []
    assert "Requeued: 1 message" in capsys.readouterr().err


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
