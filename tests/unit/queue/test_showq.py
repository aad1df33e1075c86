"""queue.showq: the listing's pieces, its JSON lines and its defer log paths."""

import json

import pytest

from mta.bounce import logfile
from mta.queue import showq
from mta.queue.showq import QueueEntry


def entries(n):
    for i in range(n):
        yield QueueEntry(
            "deferred",
            f"5BRk4K3ZBvz{i:04d}",
            1700000000 + i,
            2000 + i,
            f"s{i}@x",
            [(f"r{i}@y", "")],
        )


TRICKY = [
    QueueEntry("active", "5BRk4K3ZBvzvRh", 1700000000, 12, "", [], forced_expire=True),
    QueueEntry(
        "deferred",
        "5BRk4K3ZBvzvRi",
        0,
        0,
        'q"uote\\back\x01slash',
        [("é@ü.example", 'reason "x"\t\udcff'), ("b@x", ""), ("\u2028@x", "\x7f")],
    ),
    QueueEntry("hold", "5BRk4K3ZBvzvRj", damaged=True),
]


@pytest.mark.parametrize("entry", TRICKY)
def test_json_line_is_what_json_dumps_gives(entry):
    assert showq.format_json(entry) == json.dumps(entry.as_json(), ensure_ascii=False) + "\n"


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_pieces_are_whole_messages_and_join_to_the_listing(as_json):
    pieces = list(showq.iter_listing(entries(2000), as_json))
    one_by_one = [showq.format_json(e) if as_json else showq.format_entry(e) for e in entries(2000)]
    if not as_json:
        one_by_one = [
            showq.format_header(),
            *one_by_one,
            showq.format_footer(sum(e.message_size for e in entries(2000)), 2000),
        ]
    assert "".join(pieces) == "".join(one_by_one)
    assert len(pieces) > 1
    ends = {len("".join(one_by_one[: i + 1])) for i in range(len(one_by_one))}
    assert all(len("".join(pieces[: i + 1])) in ends for i in range(len(pieces)))


@pytest.mark.parametrize("depth", [0, 1, 2, 3])
@pytest.mark.parametrize("hashed", [("deferred", "defer"), ("deferred",)])
def test_defer_log_path_is_log_path(depth, hashed):
    layout = ("/var/spool/mta/", depth, hashed)
    path_of = showq.log_path_of(layout, "defer")
    for qid in ("5BRk4K3ZBvzvRh", "5BRvKv4XN3z1dgf3"):
        assert path_of(qid) == logfile.log_path(layout[0], "defer", qid, depth, hashed)


def test_a_vanished_file_gives_no_entry(tmp_path):
    layout = (str(tmp_path), 1, ("deferred", "defer"))
    assert showq.read_entry(layout, "deferred", "5BRk4K3ZBvzvRh", str(tmp_path / "gone")) is None
