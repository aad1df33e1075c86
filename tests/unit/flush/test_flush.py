"""Fast flush logs: appending, flushing a site, refresh and purge, hostile names and logs."""

from __future__ import annotations

import os
import time
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from mta import log
from mta.config import load_config
from mta.flush import (
    FLUSH_HASH_MARK,
    FLUSH_NAME_MAX,
    FLUSH_TAKE_STALE,
    FlushLogs,
    encode_site,
    flush_site,
    log_name,
    refresh_logs,
)
from mta.queue.queue_file import mark_done
from mta.queue.queue_id import make_queue_id
from tests.support.agent import queue_message
from tests.support.instance import make_instance

LATER = 3600.0  # a retry time well in the future


def instance(tmp_path: Path, main_cf: str = ""):
    cfg = load_config(
        str(
            make_instance(tmp_path, "fast_flush_domains = later.example, other.example\n" + main_cf)
        )
    )
    log.init("flush", cfg)
    return cfg


def deferred(cfg, rcpts: list[str]):
    """A deferred message that is not due for an hour."""
    msg = queue_message(cfg, rcpts, queue="deferred")
    path = queue_path_of(cfg, msg.queue_id)
    os.utime(path, (time.time(), time.time() + LATER))
    return msg


def queue_path_of(cfg, qid: str, queue: str = "deferred") -> str:
    from mta.queue.queue_file import queue_layout, queue_path

    return queue_path(queue_layout(cfg), queue, qid)


def is_due(cfg, qid: str) -> bool:
    return os.stat(queue_path_of(cfg, qid)).st_mtime <= time.time()


def flush_path(cfg, site: str) -> Path:
    return Path(cfg.get("queue_directory")) / "flush" / log_name(site)


def log_ids(cfg, site: str) -> list[str]:
    return flush_path(cfg, site).read_text().split()


def maillog(tmp_path: Path) -> str:
    log.flush()
    return (tmp_path / "maillog").read_text()


# ---------------------------------------------------------------- appending
def test_add_logs_the_id_once_per_eligible_site(tmp_path):
    cfg = instance(tmp_path)
    logs = FlushLogs(cfg)
    added = logs.add("q1", ["a@Later.Example", "b@later.example", "c@elsewhere.example", "local"])
    assert added == 1
    assert log_ids(cfg, "later.example") == ["q1"]
    assert os.listdir(flush_path(cfg, "later.example").parent) == [log_name("later.example")]


def test_add_appends_and_keeps_duplicates(tmp_path):
    cfg = instance(tmp_path)
    logs = FlushLogs(cfg)
    for qid in ("q1", "q2", "q1"):
        logs.add(qid, ["a@later.example"])
    assert log_ids(cfg, "later.example") == ["q1", "q2", "q1"]


def test_add_with_no_fast_flush_domains_writes_nothing(tmp_path):
    cfg = load_config(str(make_instance(tmp_path, "fast_flush_domains =\n")))
    logs = FlushLogs(cfg)
    assert not logs.enabled
    assert logs.add("q1", ["a@later.example"]) == 0
    assert os.listdir(Path(cfg.get("queue_directory")) / "flush") == []


def test_add_failure_is_a_warning_not_an_error(tmp_path):
    cfg = instance(tmp_path)
    fdir = Path(cfg.get("queue_directory")) / "flush"
    fdir.rmdir()
    fdir.write_text("not a directory\n")
    assert FlushLogs(cfg).add("q1", ["a@later.example"]) == 0
    assert "q1: cannot add to the fast flush log of later.example" in maillog(tmp_path)


# ---------------------------------------------------------------- flushing
def test_flush_makes_only_that_sites_logged_mail_due(tmp_path):
    cfg = instance(tmp_path)
    logs = FlushLogs(cfg)
    m1 = deferred(cfg, ["a@later.example"])
    m2 = deferred(cfg, ["b@other.example"])
    m3 = deferred(cfg, ["c@later.example", "d@other.example"])
    unlogged = deferred(cfg, ["e@later.example"])  # deferred/ is not walked
    for m in (m1, m2, m3):
        logs.add(m.queue_id, [r.address for r in m.recipients])
    assert flush_site(cfg, "LATER.example.") == 2
    assert is_due(cfg, m1.queue_id) and is_due(cfg, m3.queue_id)
    assert not is_due(cfg, m2.queue_id) and not is_due(cfg, unlogged.queue_id)
    assert sorted(log_ids(cfg, "later.example")) == sorted([m1.queue_id, m3.queue_id])
    assert sorted(log_ids(cfg, "other.example")) == sorted([m2.queue_id, m3.queue_id])


def test_flush_drops_ids_that_are_gone_or_no_longer_pending_there(tmp_path):
    cfg = instance(tmp_path)
    keep = deferred(cfg, ["a@later.example"])
    gone = deferred(cfg, ["b@later.example"])
    os.unlink(queue_path_of(cfg, gone.queue_id))
    done = deferred(cfg, ["c@later.example", "d@other.example"])
    mark_done(queue_path_of(cfg, done.queue_id), [done.recipients[0].offset])
    os.utime(queue_path_of(cfg, done.queue_id), (time.time(), time.time() + LATER))
    held = queue_message(cfg, ["e@later.example"], queue="hold")
    logs = FlushLogs(cfg)
    for qid in (keep.queue_id, gone.queue_id, done.queue_id, held.queue_id, keep.queue_id):
        logs.add(qid, ["x@later.example"])
    assert flush_site(cfg, "later.example") == 1
    assert log_ids(cfg, "later.example") == [keep.queue_id]
    assert not is_due(cfg, done.queue_id)
    assert not [n for n in os.listdir(flush_path(cfg, "later.example").parent) if n[0] == "."]


def test_flush_without_a_log_does_nothing(tmp_path):
    cfg = instance(tmp_path)
    m = deferred(cfg, ["a@later.example"])
    assert flush_site(cfg, "later.example") == 0
    assert not is_due(cfg, m.queue_id)
    assert not flush_path(cfg, "later.example").exists()


def test_flush_leaves_an_empty_log_marked_read(tmp_path):
    cfg = instance(tmp_path)
    FlushLogs(cfg).add("Q" * 10 + "zB", ["a@later.example"])  # an id with no file
    path = flush_path(cfg, "later.example")
    os.utime(path, (time.time() - 9999, time.time() - 9999))
    assert flush_site(cfg, "later.example") == 0
    assert path.read_bytes() == b""
    assert os.stat(path).st_atime > time.time() - 60


def test_corrupt_log_lines_are_skipped_with_a_warning(tmp_path):
    cfg = instance(tmp_path)
    m = deferred(cfg, ["a@later.example"])
    path = flush_path(cfg, "later.example")
    path.write_bytes(
        b"\x00\xff\xfe binary junk\n"
        + b"B" * 100
        + b"\n"
        + b"C" * 200_000  # longer than a read chunk
        + b"\n../../deferred/x\n"
        + m.queue_id.encode()[:5]
        + b"/"
        + m.queue_id.encode()[5:]
        + b"\n"
        + m.queue_id.encode()
        + b"\n\n"
        + b"unterminated"
    )
    assert flush_site(cfg, "later.example") == 1
    assert is_due(cfg, m.queue_id)
    assert log_ids(cfg, "later.example") == [m.queue_id]
    assert f"warning: fast flush log {path}: skipped 7 malformed line(s)" in maillog(tmp_path)


def test_stray_files_in_the_deferred_queue_are_not_reached(tmp_path):
    cfg = instance(tmp_path)
    outside = tmp_path / "outside"
    outside.write_text("x")
    before = os.stat(outside).st_mtime
    flush_path(cfg, "later.example").write_text("../../outside\n/etc/passwd\n..\n")
    assert flush_site(cfg, "later.example") == 0
    assert os.stat(outside).st_mtime == before


# ---------------------------------------------------------------- names
HOSTILE = [
    "../../etc",
    "/etc/passwd",
    ".",
    "..",
    ".hidden",
    "a/b",
    "a\x00b",
    "x" * 300,
    "%2f",
    "=abc",
    "ünï.example",
    "\ud800",
]


def test_hostile_site_names_stay_inside_the_flush_dir(tmp_path):
    cfg = instance(tmp_path, "fast_flush_domains = static:all\n")
    before = {str(p) for p in tmp_path.rglob("*")}
    logs = FlushLogs(cfg)
    for i, site in enumerate(HOSTILE):
        logs.add(f"q{i}", [f"u@{site}"])
        flush_site(cfg, site)
    fdir = Path(cfg.get("queue_directory")) / "flush"
    new = {str(p) for p in tmp_path.rglob("*")} - before - {str(tmp_path / "maillog")}
    assert new and all(os.path.dirname(p) == str(fdir) for p in new)
    assert not any(os.path.basename(p).startswith(".") for p in new)


def test_site_names_ignore_case_and_a_trailing_dot():
    assert log_name("Later.EXAMPLE.") == log_name(" later.example ") == "later.example"
    assert log_name("[192.0.2.1]") == "[192.0.2.1]"


def test_long_site_names_are_hashed():
    name = encode_site("a" * (FLUSH_NAME_MAX + 1))
    assert name.startswith(FLUSH_HASH_MARK) and len(name) == 65
    assert encode_site("a" * FLUSH_NAME_MAX) == "a" * FLUSH_NAME_MAX


def decode_name(name: str) -> str:
    """The inverse of encode_site for a name that was not hashed."""
    out, i = bytearray(), 0
    while i < len(name):
        if name[i] == "%":
            out.append(int(name[i + 1 : i + 3], 16))
            i += 3
        else:
            out += name[i].encode()
            i += 1
    return out.decode("utf-8", "surrogatepass")


SITES = st.text(
    alphabet=st.one_of(st.sampled_from("aZ09.-_%/=[]: \x00"), st.characters()), min_size=1
)


@given(SITES)
def test_encoding_is_a_safe_file_name(site):
    name = encode_site(site)
    assert "/" not in name and "\x00" not in name
    assert not name.startswith(".") and name not in ("", ".", "..")
    assert len(name) <= max(FLUSH_NAME_MAX, 65)


@given(SITES)
def test_encoding_can_be_undone_unless_hashed(site):
    name = encode_site(site)
    if not name.startswith(FLUSH_HASH_MARK):
        assert decode_name(name) == site


@given(SITES, SITES)
def test_encoding_is_injective(a, b):
    if a != b:
        assert encode_site(a) != encode_site(b)


# ---------------------------------------------------------------- refresh and purge
def test_refresh_flushes_a_log_unread_for_the_refresh_time(tmp_path):
    cfg = instance(tmp_path, "fast_flush_refresh_time = 1h\n")
    stale = deferred(cfg, ["a@later.example"])
    fresh = deferred(cfg, ["b@other.example"])
    logs = FlushLogs(cfg)
    logs.add(stale.queue_id, ["a@later.example"])
    logs.add(fresh.queue_id, ["b@other.example"])
    now = time.time()
    path = flush_path(cfg, "later.example")
    os.utime(path, (now - 3601, now))  # read over an hour ago, appended to just now
    stats = refresh_logs(cfg, now)
    assert stats == (1, 0, 1)
    assert is_due(cfg, stale.queue_id) and not is_due(cfg, fresh.queue_id)
    assert os.stat(path).st_atime >= now  # read again: not refreshed at the next run
    assert refresh_logs(cfg, now) == (0, 0, 0)


def test_purge_removes_empty_logs_older_than_the_purge_time(tmp_path):
    cfg = instance(tmp_path, "fast_flush_purge_time = 2d\n")
    now = time.time()
    old, young, full = (
        flush_path(cfg, s) for s in ("later.example", "other.example", "third.example")
    )
    old.write_bytes(b"")
    young.write_bytes(b"")
    full.write_text("q1\n")
    for p in (old, full):
        os.utime(p, (now, now - 2 * 86400 - 1))
    os.utime(young, (now, now - 2 * 86400 + 60))
    stats = refresh_logs(cfg, now)
    assert stats.purged == 1
    assert not old.exists() and young.exists() and full.exists()


def test_a_log_taken_by_a_dead_flush_is_merged_back(tmp_path):
    cfg = instance(tmp_path)
    fdir = flush_path(cfg, "later.example").parent
    taken = fdir / ".later.example.4242-0.take"
    q1, q2, q3 = (make_queue_id(time.time(), inode) for inode in (1, 2, 3))
    taken.write_text(f"{q1}\n{q2}\n")
    now = time.time()
    FlushLogs(cfg).add(q3, ["a@later.example"])
    assert refresh_logs(cfg, now).purged == 0
    assert taken.exists()  # a live flush may still hold it
    refresh_logs(cfg, now + FLUSH_TAKE_STALE + 1)
    assert not taken.exists()
    assert log_ids(cfg, "later.example") == [q3, q1, q2]
