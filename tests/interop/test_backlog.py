"""A backlog drains under the real master with the active window bounded, and qmgr's
memory stays flat while it does."""

from __future__ import annotations

import os
import threading
import time

import pytest

from mta.common.trigger import send_trigger
from mta.qmgr.scan import iter_queue
from mta.queue.queue_file import QueueFileWriter, Recipient
from tests.support.running import Instance, wait_for

pytestmark = [pytest.mark.interop, pytest.mark.slow, pytest.mark.timeout(180)]

BACKLOG = 3000
WINDOW = 100


def rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def test_backlog_drains_with_bounded_active_window(tmp_path):
    inst = Instance(
        tmp_path,
        "qmgr fifo n - n 300 1 qmgr\ndiscard unix - - n - - discard\n",
        {
            "myhostname": "mx.test.example",
            "mydestination": "",
            "default_transport": "discard:backlog test",
            "qmgr_message_active_limit": str(WINDOW),
        },
    )
    r = inst.mta("start")
    assert r.returncode == 0, r.stderr
    assert wait_for(lambda: inst.children("qmgr"), 10)
    time.sleep(1.0)
    idle = max(rss_kb(pid) for pid in inst.children("qmgr"))  # qmgr with an empty queue
    body = b"Subject: backlog\n\n" + b"x" * 2000 + b"\n"
    for i in range(BACKLOG):  # a backlog written straight into incoming/
        w = QueueFileWriter(inst.queue, "incoming")
        w.write_envelope("a@src.example", [Recipient(address=f"r{i}@dst.example")])
        w.write_content(body)
        w.commit()
    samples: list[int] = []
    active: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.05):
            for pid in inst.children("qmgr"):
                samples.append(rss_kb(pid))
            try:
                active.append(len(os.listdir(os.path.join(inst.queue, "active"))))
            except OSError:
                pass

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    send_trigger(os.path.join(inst.queue, "public", "qmgr"), b"I")
    try:
        done = wait_for(lambda: inst.log().count(": removed") >= BACKLOG, 150, 0.2)
        assert done, inst.log()[-2000:]
    finally:
        stop.set()
        sampler.join(5)
        inst.stop()
    assert not list(iter_queue(inst.queue, "incoming"))
    assert 0 < max(active) <= WINDOW  # never more than the window in active/
    # with the whole backlog in memory at once qmgr grew by about 7 MB over its
    # idle size here; with the window, by about 2 MB
    assert idle and max(samples) - idle < 4_000, (idle, max(samples))
