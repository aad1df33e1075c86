"""The pipe agent as a service of the real master: master.cf arguments, a real script."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from mta.common.deliver_request import deliver
from mta.config import load_config
from tests.support.agent import queue_message, request_for
from tests.support.running import Instance, wait_for

pytestmark = [pytest.mark.interop, pytest.mark.timeout(60)]

SCRIPT = """#!/bin/sh
out="$1"
shift
printf '%s\\n' "$@" > "$out/argv"
cat > "$out/stdin"
exit "$(cat "$out/exit" 2>/dev/null || echo 0)"
"""


@pytest.fixture
def world():
    """A directory user nobody can reach (pytest's tmp_path is below a 0700 one)."""
    top = Path(tempfile.mkdtemp(prefix="mta-pipe-interop-"))
    top.chmod(0o755)
    (top / "out").mkdir()
    (top / "out").chmod(0o777)
    (top / "record.sh").write_text(SCRIPT)
    (top / "record.sh").chmod(0o755)
    yield top
    shutil.rmtree(top, ignore_errors=True)


@pytest.fixture
def running(tmp_path, world):
    made = []

    def start(pipe_args: str) -> Instance:
        inst = Instance(tmp_path / f"i{len(made)}", f"mypipe unix - n n - - pipe {pipe_args}\n")
        made.append(inst)
        r = inst.mta("start")
        assert r.returncode == 0, r.stderr
        sock = os.path.join(inst.queue, "private", "mypipe")
        assert wait_for(lambda: os.path.exists(sock), 10), inst.log()
        return inst

    yield start
    for inst in made:
        inst.stop()


def send(inst: Instance, rcpts: list[str], body: bytes):
    cfg = load_config(inst.dir)
    msg = queue_message(cfg, rcpts, body=body)
    req = request_for(msg, "example.net", transport="mypipe")
    path = os.path.join(inst.queue, "private", "mypipe")
    return msg, asyncio.run(deliver(path, req, 30))


def user_arg() -> str:
    return "user=nobody" if os.geteuid() == 0 else ""


def test_pipe_service_delivers_with_master_cf_arguments(running, world):
    inst = running(
        f"flags=FR.X {user_arg()} argv={world}/record.sh {world}/out -f ${{sender}} ${{recipient}}"
    )
    body = b"Subject: t\n\n.leading dot\n"
    msg, result = send(inst, ["u1@example.net", "u2@example.net"], body)
    assert not result.error
    assert [(st.action, st.dsn) for st in result.statuses] == [("delivered", "2.0.0")] * 2
    assert (world / "out" / "argv").read_text().splitlines() == [
        "-f",
        "a@example.org",
        "u1@example.net",
        "u2@example.net",
    ]
    lines = (world / "out" / "stdin").read_bytes().split(b"\n")
    assert lines[0].startswith(b"From a@example.org ")
    assert lines[1] == b"Return-Path: <a@example.org>"
    assert lines[2:] == [b"Subject: t", b"", b"..leading dot", b""]
    log = inst.wait_log(rf"{msg.queue_id}: to=<u2@example.net>, relay=mypipe.*status=sent")
    assert "delivered via mypipe service" in log


def test_pipe_service_bounces_on_exit_67(running, world):
    (world / "out" / "exit").write_text("67")
    inst = running(f"{user_arg()} argv={world}/record.sh {world}/out")
    _, result = send(inst, ["u1@example.net"], b"Subject: t\n\nbody\n")
    assert [(st.action, st.dsn) for st in result.statuses] == [("failed", "5.1.1")]
    assert result.statuses[0].reason.startswith("Command died with status 67")


def test_unknown_macro_in_master_cf_defers_and_warns(running, world):
    inst = running(f"{user_arg()} argv={world}/record.sh ${{no_such_macro}}")
    _, result = send(inst, ["u1@example.net"], b"Subject: t\n\nbody\n")
    assert [(st.action, st.dsn) for st in result.statuses] == [("delayed", "4.3.5")]
    log = inst.wait_log(r"warning: .*master\.cf: service mypipe: unknown macro")
    assert "${no_such_macro}" in log
