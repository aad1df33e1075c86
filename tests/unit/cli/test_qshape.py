"""mta qshape: the table of qshape, counts by domain and age bucket."""

import pytest

from mta.cli import qshape
from mta.config import load_config
from mta.queue.queue_file import mark_done
from tests.support.agent import queue_message
from tests.support.instance import make_instance


def setup(tmp_path):
    cdir = make_instance(tmp_path)
    cfg = load_config(str(cdir))
    for i in range(5):
        queue_message(cfg, [f"r{i}@one.example", f"x{i}@two.example"], queue="deferred")
    queue_message(cfg, ["z@sub.one.example"], sender="b@other.example", queue="deferred")
    done = queue_message(cfg, ["gone@one.example"], queue="deferred")
    mark_done(done.path, [done.recipients[0].offset])
    return str(cdir), cfg


def rows(out: str) -> list[list[str]]:
    return [line.split() for line in out.splitlines()]


def test_recipient_domains_in_the_deferred_queue(tmp_path, capsys):
    cdir, _ = setup(tmp_path)
    assert qshape.main(["-c", cdir, "deferred"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert all(len(line) == 80 for line in lines)
    table = rows(out)
    assert table[0] == ["T", "5", "10", "20", "40", "80", "160", "320", "640", "1280", "1280+"]
    assert table[1] == ["TOTAL", "11", "11"] + ["0"] * 9
    assert [r[:3] for r in table[2:]] == [
        ["one.example", "5", "5"],
        ["two.example", "5", "5"],
        ["sub.one.example", "1", "1"],
    ]
    # the T column lines up with the counts under it
    assert lines[0].index("T") == lines[1].index("TOTAL") + len("TOTAL") + 2


def test_default_queues_are_incoming_and_active(tmp_path, capsys):
    cdir, _ = setup(tmp_path)
    assert qshape.main(["-c", cdir]) == 0
    assert rows(capsys.readouterr().out)[1][:2] == ["TOTAL", "0"]


def test_sender_domains_and_buckets_by_age(tmp_path, capsys):
    cdir, cfg = setup(tmp_path)
    old = queue_message(cfg, ["o@one.example"], sender="", queue="deferred")
    shape = qshape.collect(cfg, ("deferred",), True, qshape.bucket_limits(4, 1, False))
    assert shape.rows["example.org"][0] == 6  # the default sender of queue_message
    # ages come from the arrival time in the file: look from 2.5 minutes later
    later = qshape.collect(
        cfg, ("deferred",), True, qshape.bucket_limits(4, 1, False), now=old.arrival + 150
    )
    assert later.rows["MAILER-DAEMON"] == [0, 0, 1, 0]  # the 2-4 minutes bucket
    assert later.rows["example.org"] == [0, 0, 6, 0]
    assert qshape.main(["-c", cdir, "-s", "-b", "4", "-t", "1", "deferred"]) == 0
    table = rows(capsys.readouterr().out)
    assert table[0] == ["T", "1", "2", "4", "4+"]
    assert {r[0] for r in table[2:]} == {"example.org", "other.example", "MAILER-DAEMON"}


def test_linear_buckets(tmp_path):
    assert qshape.bucket_limits(5, 10, True) == [10, 20, 30, 40]
    assert qshape.bucket_limits(5, 10, False) == [10, 20, 40, 80]


def test_parent_domains_need_enough_subdomains(tmp_path, capsys):
    cdir = make_instance(tmp_path)
    cfg = load_config(str(cdir))
    queue_message(cfg, [f"u@s{i}.big.example" for i in range(5)], queue="incoming")
    queue_message(cfg, ["u@a.small.example"], queue="incoming")
    assert qshape.main(["-c", str(cdir), "-p"]) == 0
    names = [r[0] for r in rows(capsys.readouterr().out)[2:]]
    assert ".big.example" in names and ".small.example" not in names
    assert ".example" not in names  # a top-level domain is never a row
    assert qshape.main(["-c", str(cdir), "-p", "-m", "7"]) == 0
    names = [r[0] for r in rows(capsys.readouterr().out)[2:]]
    assert not [n for n in names if n.startswith(".")]


def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    cdir, _ = setup(tmp_path)
    out = tmp_path / "shape.png"
    assert qshape.main(["-c", cdir, "--plot", str(out), "deferred"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unknown_queue_is_a_usage_error(tmp_path):
    cdir, _ = setup(tmp_path)
    with pytest.raises(SystemExit) as info:
        qshape.main(["-c", cdir, "nosuchqueue"])
    assert info.value.code == 2


def test_json_has_the_same_counts_as_the_table(tmp_path, capsys):
    import json

    cdir, _ = setup(tmp_path)
    assert qshape.main(["-c", cdir, "--json", "deferred"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["buckets"][0] == "5" and doc["buckets"][-1] == "1280+"
    assert doc["total"] == {"total": 11, "buckets": [11] + [0] * 9}
    assert len(doc["buckets"]) == len(doc["total"]["buckets"]) == 10
    assert [(d["domain"], d["total"]) for d in doc["domains"]] == [
        ("one.example", 5),
        ("two.example", 5),
        ("sub.one.example", 1),
    ]


def test_on_a_terminal_batches_show_and_only_the_top_domains(tmp_path):
    import os
    import pty
    import subprocess
    import sys

    cdir, _ = setup(tmp_path)
    main, sub = pty.openpty()
    proc = subprocess.run(
        [sys.executable, "-m", "mta", "qshape", "-c", cdir, "-N", "2", "-n", "1", "deferred"],
        stdout=sub,
        stderr=subprocess.PIPE,
        timeout=30,
    )
    os.close(sub)
    out = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.close(main)
    assert proc.returncode == 0, proc.stderr
    text = out.decode()
    # 6 of the 7 messages make three batches of 2, then the final table replaces them
    assert text.count(qshape.CLEAR_SCREEN) == 4
    final = rows(text.rsplit(qshape.CLEAR_SCREEN, 1)[1])
    assert [r[0] for r in final[1:]] == ["TOTAL", "one.example"]  # -n 1: the top domain only
    assert final[1][1] == "11"  # the total still counts everything
