"""What a crash test needs: a sink that counts arrivals, a sender that records when
each message went in, and the tally of lost, duplicated and stuck messages."""

from __future__ import annotations

import asyncio
import collections
import smtplib
import subprocess
import sys
import threading
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

from mta.qmgr.scan import iter_queue
from tests.support.running import free_port, relay_system

SENDMAIL = [sys.executable, "-m", "mta.cli.sendmail"]


class SlowQuit(SMTP):
    """A server that takes quit_delay seconds to answer QUIT (a busy remote MTA)."""

    quit_delay = 0.0

    async def smtp_QUIT(self, arg: str) -> None:
        await asyncio.sleep(self.quit_delay)
        await super().smtp_QUIT(arg)


class SinkController(Controller):
    quit_delay = 0.0

    def factory(self):
        server = SlowQuit(self.handler, **self.SMTP_kwargs)
        server.quit_delay = self.quit_delay
        return server


class CountingSink:
    """aiosmtpd sink that counts arrivals per X-Test-Id and notes when each first came;
    it answers DATA after delay seconds and QUIT after quit_delay."""

    def __init__(self, delay: float = 0.01, quit_delay: float = 0.0) -> None:
        self.seen: collections.Counter = collections.Counter()
        self.first: dict[str, float] = {}
        self.lock = threading.Lock()
        self.delay = delay
        self.port = free_port()
        self.controller = SinkController(self, hostname="127.0.0.1", port=self.port)
        self.controller.quit_delay = quit_delay

    async def handle_DATA(self, server, session, envelope):
        await asyncio.sleep(self.delay)
        for line in envelope.content.splitlines():
            if line.lower().startswith(b"x-test-id:"):
                key = line.split(b":", 1)[1].strip().decode()
                with self.lock:
                    self.seen[key] += 1
                    self.first.setdefault(key, time.monotonic())
        return "250 2.0.0 Ok"

    def total(self) -> int:
        with self.lock:
            return sum(self.seen.values())


def relay_to_sink(tmp_path, services: str, quit_delay: float = 0.0, **main: str):
    """A started relay_system (master.cf services, main.cf main) whose relayhost is a new
    CountingSink answering QUIT after quit_delay, retrying soon (backoff 1 to 2 s, a
    queue run every second); returns (inst, sink). Stop both when done."""
    sink = CountingSink(quit_delay=quit_delay)
    sink.controller.start()
    inst = relay_system(
        tmp_path,
        services,
        relayhost=f"[127.0.0.1]:{sink.port}",
        minimal_backoff_time="1s",
        maximal_backoff_time="2s",
        queue_run_delay="1s",
        **main,
    )
    r = inst.mta("start")
    assert r.returncode == 0, r.stderr
    return inst, sink


def message(i: int) -> bytes:
    return f"X-Test-Id: m{i}\r\nSubject: {i}\r\n\r\nbody {i}\r\n".encode()


class Sender(threading.Thread):
    """Sends count messages (SMTP to port, or sendmail -C config_dir with env); for
    each one accepted, notes when its submission began; pause seconds between."""

    def __init__(self, count: int, port: int = 0, inst=None, pause: float = 0.0) -> None:
        super().__init__(daemon=True)
        self.count, self.port, self.inst, self.pause = count, port, inst, pause
        self.accepted: dict[str, float] = {}
        self.errors: list[str] = []

    def run(self) -> None:
        if self.port:
            with smtplib.SMTP("127.0.0.1", self.port, timeout=60) as s:
                for i in range(self.count):
                    began = time.monotonic()
                    s.sendmail("a@src.example", [f"r{i}@dst.example"], message(i))
                    self.accepted[f"m{i}"] = began
                    time.sleep(self.pause)
            return
        for i in range(self.count):
            began = time.monotonic()
            r = subprocess.run(
                [*SENDMAIL, "-C", self.inst.dir, "-f", "a@src.example", f"r{i}@dst.example"],
                input=message(i).replace(b"\r\n", b"\n"),
                capture_output=True,
                timeout=60,
                env=self.inst.env,
            )
            if r.returncode:
                self.errors.append(r.stderr.decode(errors="replace"))
            else:
                self.accepted[f"m{i}"] = began
            time.sleep(self.pause)


def queue_leftovers(queue_dir: str) -> list[str]:
    """Queue ids still in maildrop, incoming, active or deferred."""
    hashed = ("deferred", "defer")
    out = []
    for q in ("maildrop", "incoming", "active", "deferred"):
        out += [qid for qid, _ in iter_queue(queue_dir, q, 1, hashed)]
    return out


def queue_empty(inst) -> bool:
    return not queue_leftovers(inst.queue)


def tally(sink: CountingSink, sender: Sender, killed_at: float) -> dict:
    """Lost and duplicated messages, and seconds from the kill to the first arrival
    of a message whose submission began after it (only a new process can have
    handled that one)."""
    with sink.lock:
        seen, first = dict(sink.seen), dict(sink.first)
    after = [first[k] for k, t in sender.accepted.items() if t > killed_at and k in first]
    return {
        "sent": len(sender.accepted),
        "lost": sorted(set(sender.accepted) - set(seen)),
        "duplicates": sum(n - 1 for n in seen.values()),
        "resume": (min(after) - killed_at) if after else None,
    }
