"""The showq service under the real master: mta queue --showq lists what mta queue reads."""

from __future__ import annotations

import json
import os
import smtplib
import stat

import pytest

from tests.support.running import relay_system, wait_for

pytestmark = pytest.mark.interop


@pytest.fixture
def mail_system(tmp_path):
    inst = relay_system(
        tmp_path,
        "retry unix - - n - - error\nshowq unix n - n - - showq\n",
        transport_maps="inline:{ {later.example=retry:4.4.4 busy} }",
        minimal_backoff_time="1h",
        maximal_backoff_time="2h",
    )
    r = inst.mta("start")
    assert r.returncode == 0, r.stderr
    yield inst
    inst.stop()


def queued(inst, *flags: str) -> list[dict]:
    r = inst.mta("queue", "-j", *flags)
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


def test_showq_listing_equals_the_direct_one(mail_system):
    inst = mail_system
    with smtplib.SMTP("127.0.0.1", inst.port, timeout=10) as s:
        for i in range(3):
            s.sendmail("sender@ok.example", [f"u{i}@later.example"], b"Subject: hi\r\n\r\nbody\r\n")
    inst.wait_log(r"status=deferred \(busy\)", 15, count=3)
    assert wait_for(lambda: [m["queue_name"] for m in queued(inst)] == ["deferred"] * 3, 10)
    r = inst.mta("super", "-h", queued(inst)[0]["queue_id"])
    assert r.returncode == 0, r.stderr

    direct = inst.mta("queue", "-j")
    served = inst.mta("queue", "--showq", "-j")
    assert served.returncode == 0, served.stderr
    assert served.stdout == direct.stdout
    assert sorted(m["queue_name"] for m in map(json.loads, served.stdout.splitlines())) == [
        "deferred",
        "deferred",
        "hold",
    ]
    direct = inst.mta("queue", "-p")
    served = inst.mta("queue", "--showq", "-p")
    assert served.returncode == 0 and served.stdout == direct.stdout
    assert "(busy)" in served.stdout and served.stdout.endswith("in 3 Requests.\n")

    sock = os.path.join(inst.queue, "public", "showq")  # any local user may connect
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o666


def test_showq_down_is_exit_69(mail_system):
    inst = mail_system
    inst.stop()
    r = inst.mta("queue", "--showq")
    assert r.returncode == 69
    assert "showq" in r.stderr and "the mail system is down" in r.stderr
    assert inst.mta("queue").stdout == "Mail queue is empty\n"  # read directly all the same
