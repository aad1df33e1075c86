"""Fixtures for the cleanup tests: an instance with its spool, and a message runner."""

from __future__ import annotations

import email.parser
import email.policy
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from mta import log
from mta.cleanup import Cleanup
from mta.config import load_config
from mta.queue.queue_file import QueueMessage, iter_content, read_queue_file
from tests.support.instance import make_instance

REMOTE = {
    "client_name": "client.example",
    "client_address": "192.0.2.1",
    "helo_name": "helo.example",
    "protocol": "ESMTP",
}
LOCAL_SMTP = dict(REMOTE, client_name="localhost", client_address="127.0.0.1")


@dataclass
class Outcome:
    result: object
    msg: QueueMessage | None
    content: bytes
    path: str | None

    @property
    def email(self):
        return email.parser.BytesParser(policy=email.policy.compat32).parsebytes(self.content)

    def header_lines(self) -> list[bytes]:
        return self.content.split(b"\n\n", 1)[0].split(b"\n")


class Instance:
    def __init__(self, tmp_path: Path, main_cf: str = "") -> None:
        self.tmp = tmp_path
        self.cdir = make_instance(tmp_path, main_cf)
        self.cfg = load_config(str(self.cdir))
        self.spool = Path(self.cfg.get("queue_directory"))
        log.init("cleanup", self.cfg)
        self.cleanup = Cleanup(self.cfg)

    def files(self, queue: str = "incoming") -> list[str]:
        out = []
        for root, _, names in os.walk(self.spool / queue):
            out += [os.path.join(root, n) for n in names if not n.startswith(".")]
        return sorted(out)

    def all_files(self) -> list[str]:
        out = []
        for root, _, names in os.walk(self.spool):
            out += [os.path.join(root, n) for n in names]
        return out

    def maillog(self) -> str:
        path = self.tmp / "maillog"
        return path.read_text() if path.exists() else ""

    def run(
        self,
        content: bytes,
        sender: str = "sender@example.org",
        rcpts=("rcpt@example.net",),
        attrs: dict | None = None,
        chunks: list[int] | None = None,
        queue: str = "incoming",
        **kw,
    ) -> Outcome:
        job = self.cleanup.open(sender, dict(REMOTE if attrs is None else attrs), **kw)
        for r in rcpts:
            if isinstance(r, tuple):
                job.add_recipient(*r)
            else:
                job.add_recipient(r)
        if chunks:
            last = 0
            for cut in chunks:
                job.write(content[last:cut])
                last = cut
            job.write(content[last:])
        else:
            job.write(content)
        result = job.close(queue)
        if result.action != "queued":
            return Outcome(result, None, b"", None)
        target = "hold" if result.hold else queue
        (path,) = [p for p in self.files(target) if p.endswith(result.queue_id)]
        msg = read_queue_file(path)
        data = b"".join(line + b"\n" for line in iter_content(path, msg))
        return Outcome(result, msg, data, path)


@pytest.fixture
def instance(tmp_path):
    def make(main_cf: str = "") -> Instance:
        return Instance(tmp_path, main_cf)

    return make
