"""mta queue (postqueue -p, -j, -i) and the listing in Postfix's mailq format."""

import io
import json
import os
import time

from mta.bounce import logfile
from mta.cli import queue as queue_cli
from mta.common.dsn import ACTION_DELAYED, RecipientStatus
from mta.config import load_config
from mta.queue.queue_file import mark_done
from mta.queue.showq import ADDR_COLUMN, format_entry, iter_entries
from tests.support.agent import queue_message
from tests.support.instance import make_instance

BODY = b"Subject: listing\n\n" + b"x" * 3000 + b"\n"


def setup(tmp_path):
    cfg = load_config(str(make_instance(tmp_path)))
    deferred = queue_message(
        cfg, ["bob@remote.example", "carol@remote.example"], queue="deferred", body=BODY
    )
    reason = "connect to remote.example[192.0.2.1]:25: Connection refused"
    statuses = [RecipientStatus.of(r, ACTION_DELAYED, "4.4.1", reason) for r in deferred.recipients]
    logfile.append(cfg.get("queue_directory"), "defer", deferred.queue_id, statuses)
    active = queue_message(cfg, ["dave@other.example", "done@other.example"], queue="active")
    mark_done(active.path, [active.recipients[1].offset])
    held = queue_message(cfg, ["erin@third.example"], sender="", queue="hold")
    return cfg, deferred, active, held, reason


def listing(cfg, as_json=False):
    out = io.StringIO()
    assert queue_cli.list_queue(cfg, as_json, out) == 0
    return out.getvalue()


def test_listing_has_postfix_mailq_shape(tmp_path):
    cfg, deferred, active, held, reason = setup(tmp_path)
    text = listing(cfg)
    lines = text.splitlines()
    assert lines[0] == "----Queue ID----- --Size-- ---Arrival Time---- --Sender/Recipient------"
    # the active message is marked "*", the held one "!", the null sender is MAILER-DAEMON
    assert any(line.startswith(f"{active.queue_id}*") for line in lines)
    held_line = next(line for line in lines if line.startswith(held.queue_id))
    assert held_line[len(held.queue_id)] == "!" and held_line.endswith(" MAILER-DAEMON")
    # the deferral reason once, before the recipients it applies to
    i = lines.index(f"({reason})".rjust(78))
    assert lines[i + 1] == " " * ADDR_COLUMN + "bob@remote.example"
    assert lines[i + 2] == " " * ADDR_COLUMN + "carol@remote.example"
    # a done recipient is not listed
    assert "done@other.example" not in text
    size = deferred.content_size + active.content_size + held.content_size
    assert lines[-1] == f"-- {size // 1024} Kbytes in 3 Requests."


def test_entry_columns(tmp_path):
    cfg, deferred, *_ = setup(tmp_path)
    entry = next(e for e in iter_entries(cfg) if e.queue_id == deferred.queue_id)
    first = format_entry(entry).splitlines()[0]
    when = time.strftime("%a %b %e %H:%M:%S", time.localtime(int(deferred.arrival)))
    qid = deferred.queue_id
    assert first == f"{qid:<17} {deferred.content_size:>8} {when:<19} a@example.org"


def test_long_reason_starts_in_column_0_unfolded(tmp_path):
    cfg = load_config(str(make_instance(tmp_path)))
    m = queue_message(cfg, ["bob@remote.example"], queue="deferred")
    reason = "host mx.remote.example[192.0.2.1] said: 450 4.2.0 " + "mailbox busy " * 12
    st = RecipientStatus.of(m.recipients[0], ACTION_DELAYED, "4.2.0", reason.strip())
    logfile.append(cfg.get("queue_directory"), "defer", m.queue_id, [st])
    lines = listing(cfg).splitlines()
    assert f"({reason.strip()})" in lines


def test_json_lines_carry_postqueue_fields(tmp_path):
    cfg, deferred, active, held, reason = setup(tmp_path)
    objs = {o["queue_id"]: o for o in map(json.loads, listing(cfg, True).splitlines())}
    assert set(objs) == {deferred.queue_id, active.queue_id, held.queue_id}
    d = objs[deferred.queue_id]
    assert d == {
        "queue_name": "deferred",
        "queue_id": deferred.queue_id,
        "arrival_time": int(deferred.arrival),
        "message_size": deferred.content_size,
        "forced_expire": False,
        "sender": "a@example.org",
        "recipients": [
            {"address": "bob@remote.example", "delay_reason": reason},
            {"address": "carol@remote.example", "delay_reason": reason},
        ],
    }
    assert objs[active.queue_id]["recipients"] == [{"address": "dave@other.example"}]
    held_obj = objs[held.queue_id]
    assert held_obj["queue_name"] == "hold" and held_obj["sender"] == "MAILER-DAEMON"


def test_empty_queue(tmp_path):
    cfg = load_config(str(make_instance(tmp_path)))
    assert listing(cfg) == "Mail queue is empty\n"
    assert listing(cfg, True) == ""


def test_damaged_queue_file_is_listed_not_fatal(tmp_path):
    cfg = load_config(str(make_instance(tmp_path)))
    good = queue_message(cfg, ["bob@remote.example"], queue="incoming")
    bad = os.path.join(cfg.get("queue_directory"), "incoming", "5BRk4K3ZBvzvRh")
    with open(bad, "wb") as f:
        f.write(b"garbage")
    text = listing(cfg)
    (line,) = [x for x in text.splitlines() if x.startswith("5BRk4K3ZBvzvRh")]
    assert line.split() == ["5BRk4K3ZBvzvRh", "(damaged", "queue", "file)"]
    assert good.queue_id in text and text.endswith("in 2 Requests.\n")


def test_i_makes_one_deferred_message_due(tmp_path):
    cfg = load_config(str(make_instance(tmp_path)))
    m = queue_message(cfg, ["bob@remote.example"], queue="deferred")
    os.utime(m.path, (time.time(), time.time() + 3600))  # next try in an hour
    status, text = queue_cli.flush_one(cfg, m.queue_id)
    assert os.stat(m.path).st_mtime <= time.time()  # due now
    assert status == 1 and "mail system is down" in text  # nobody to tell: stopped
    assert queue_cli.flush_one(cfg, "5BRk4K3ZBvzvRh") == (
        1,
        "5BRk4K3ZBvzvRh: no such message in the queue",
    )


def test_cli_help_and_unavailable_site_flush(tmp_path, capsys):
    cdir = str(make_instance(tmp_path))
    assert queue_cli.main(["-c", cdir, "-s", "example.com"]) == 69
    assert "not in fast_flush_domains" in capsys.readouterr().err
    assert queue_cli.main(["-c", cdir, "-j"]) == 0
