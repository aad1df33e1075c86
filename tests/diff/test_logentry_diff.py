"""Log entry kernel: compiled and reference latest_reasons agree."""

import os
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mta._speedups import logentry_ref
from mta.bounce import logfile
from mta.common.dsn import ACTIONS

IMPLS = [pytest.param(logentry_ref.latest_reasons, id="ref")]
if logfile.latest_reasons_c is not None:
    IMPLS.append(pytest.param(logfile.latest_reasons_c, id="c"))

ENTRY = (
    b"recipient=bob@x\norig_to=\ndsn_orcpt=\nnotify=0\noffset=%d\nstatus=4.4.1\n"
    b"action=delayed\nrelay=none\nreason=%s\nwhen=1.000\n\n"
)


@pytest.fixture(params=IMPLS)
def latest_reasons(request):
    return request.param


def test_extension_loaded():
    if os.environ.get("MTA_NO_EXTENSIONS"):
        pytest.skip("pure build")
    assert logfile.latest_reasons is logfile.latest_reasons_c


def test_actions_are_the_dsn_actions():
    assert logentry_ref.LOG_ACTIONS == ACTIONS


def test_the_last_entry_for_a_recipient_wins(latest_reasons):
    log = ENTRY % (90, b"first") + ENTRY % (120, b"other") + ENTRY % (90, b"second")
    assert latest_reasons(log) == {90: "second", 120: "other"}


def test_damaged_entries_are_passed_over(latest_reasons):
    good = ENTRY % (7, b"kept")
    assert latest_reasons(good + b"no equals sign\n\n") == {7: "kept"}
    assert latest_reasons(good + (ENTRY % (8, b"x")).replace(b"status=4.4.1\n", b"")) == {7: "kept"}
    assert latest_reasons(good + (ENTRY % (8, b"x")).replace(b"=delayed", b"=late")) == {7: "kept"}
    assert latest_reasons(good + (ENTRY % (8, b"x")).replace(b"notify=0", b"notify=x")) == {
        7: "kept"
    }
    assert latest_reasons(good + ENTRY.replace(b"%d", b"eight") % b"x") == {7: "kept"}


def test_numbers_are_read_as_int_reads_them(latest_reasons):
    odd = ENTRY.replace(b"offset=%d", b"offset= +1_2 ").replace(b"notify=0", b"notify=")
    assert latest_reasons(odd % b"r") == {12: "r"}
    assert latest_reasons(ENTRY.replace(b"%d", "٣".encode()) % b"r") == {3: "r"}


def test_a_missing_reason_is_empty_and_bytes_stay_text(latest_reasons):
    assert latest_reasons((ENTRY % (5, b"x")).replace(b"reason=x\n", b"")) == {5: ""}
    assert latest_reasons(ENTRY % (5, b"caf\xc3\xa9 \xff")) == {5: "café \udcff"}


def test_blank_lines_and_stray_newlines(latest_reasons):
    log = b"\n\n\n" + (ENTRY % (5, b"a")).replace(b"\n\n", b"\n\n\n\n\n") + b"\n"
    assert latest_reasons(log) == {5: "a"}
    assert latest_reasons(b"") == {} and latest_reasons(b"\n") == {}


def test_optional_fields_agree_with_the_full_reader(tmp_path, latest_reasons):
    from mta.common.dsn import RecipientStatus

    statuses = [
        RecipientStatus("a@x", 7, "delayed", "4.0.0", "first", status_word="deferred"),
        RecipientStatus("b@x", 9, "delayed", "4.0.0", "second", dsn_passed=True),
    ]
    logfile.append(str(tmp_path), "defer", "Q1", statuses, 1, ())
    with open(logfile.log_path(str(tmp_path), "defer", "Q1", 1, ()), "rb") as f:
        data = f.read()
    full = logfile.read(str(tmp_path), "defer", "Q1", 1, ())
    assert (
        latest_reasons(data) == {st.offset: st.reason for st in full} == {7: "first", 9: "second"}
    )


lines = st.sampled_from(
    [
        b"recipient=r",
        b"offset=1",
        b"offset=22",
        b"offset= 3",
        b"offset=x",
        b"action=delayed",
        b"action=failed",
        b"action=nope",
        b"status=4.0.0",
        b"notify=",
        b"notify=8",
        b"notify=y",
        b"reason=why",
        b"reason=\xe2\x82",
        b"reason=",
        b"word=deliverable",
        b"dsn_passed=1",
        b"junk",
        b"=",
        b"",
    ]
)


@pytest.mark.skipif(logfile.latest_reasons_c is None, reason="extension not built")
@given(st.lists(st.lists(lines, max_size=8), max_size=6), st.binary(max_size=6))
@settings(max_examples=500)
def test_c_agrees_with_ref(blocks, tail):
    log = b"\n\n".join(b"\n".join(block) for block in blocks) + tail
    assert logfile.latest_reasons_c(log) == logentry_ref.latest_reasons(log)


@pytest.mark.skipif(logfile.latest_reasons_c is None, reason="extension not built")
@pytest.mark.parametrize("seed", range(200))
def test_c_agrees_with_ref_on_junk(seed):
    rnd = random.Random(seed)
    parts = [b"\n", b"=", b"offset=", b"action=delayed", b"recipient=", b"status=", b"1", b"\xff"]
    log = b"".join(rnd.choice(parts) for _ in range(rnd.randrange(60)))
    assert logfile.latest_reasons_c(log) == logentry_ref.latest_reasons(log)
