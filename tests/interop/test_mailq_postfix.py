"""mta queue -p and -j against postqueue -p and -j of Postfix 3.7, and mta qshape
against qshape, on an equivalent queue: the same messages, deferred for the same
reasons by the same dead ends."""

from __future__ import annotations

import json
import re
import smtplib
import socket
import subprocess
import threading

import pytest

from tests.support import postfix
from tests.support.running import free_port, relay_system, wait_for

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(not postfix.available(), reason="needs root and Postfix"),
]

LONG = "4.2.0 " + " ".join(f"word{i:02d}" for i in range(30))


class Refuser:
    """A server that answers every RCPT with one long 450 reply."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._talk, args=(conn,), daemon=True).start()

    def _talk(self, conn) -> None:
        with conn, conn.makefile("rwb") as f:
            f.write(b"220 refuser ESMTP\r\n")
            f.flush()
            for line in f:
                verb = line[:4].upper()
                if verb == b"RCPT":
                    f.write(f"450 {LONG}\r\n".encode())
                elif verb == b"QUIT":
                    f.write(b"221 bye\r\n")
                    f.flush()
                    return
                else:
                    f.write(b"250 ok\r\n")
                f.flush()

    def close(self) -> None:
        self.sock.close()


def send_load(port: int) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.sendmail(
            "alice@src.example", ["bob@dead.example", "carol@dead.example"], b"S: x\r\n\r\nx\r\n"
        )
        s.sendmail("", ["dave@dead.example"], b"Subject: notice\r\n\r\nhi\r\n")
        s.sendmail("erin@src.example", ["frank@slow.example"], b"Subject: y\r\n\r\ny\r\n")


FIRST = re.compile(r"^(\S+?)([*!]?)( +)(\d+) (.{19}) (.*)$")


def shape(listing: str) -> list:
    """The listing with queue ids, sizes and times taken out, entries in sender order
    (the two walk their queue directories in different orders)."""
    lines = _shape_lines(listing)
    head, tail = lines[0], lines[-1]
    blocks, block = [], []
    for line in lines[1:-1]:
        block.append(line)
        if line == "":
            blocks.append(block)
            block = []
    return [head, *sorted(blocks), tail]


def _shape_lines(listing: str) -> list[str]:
    out = []
    for line in listing.splitlines():
        m = FIRST.match(line)
        if m and not line.startswith(("-", " ", "(")):
            qid, mark, pad, size, _when, sender = m.groups()
            # the id and its mark fill 17 columns, then a blank and the size in 8
            assert len(qid + mark + pad + size) == 17 + 1 + 8, line
            out.append(f"ENTRY{mark} {sender}")
        elif line.startswith("-- "):
            out.append(re.sub(r"\d+ Kbytes", "N Kbytes", line))
        else:
            out.append(line)
    return out


def entries(listing_json: str) -> list[dict]:
    objs = [json.loads(line) for line in listing_json.splitlines()]
    for o in objs:
        for key in ("queue_id", "arrival_time", "message_size"):
            assert key in o
            del o[key]
    return sorted(objs, key=lambda o: o["sender"])


def test_listing_matches_postqueue(tmp_path):
    refuser = Refuser()
    dead = free_port()  # nobody listens: "Connection refused"
    routes = f"dead.example smtp:[127.0.0.1]:{dead}\nslow.example smtp:[127.0.0.1]:{refuser.port}\n"
    (tmp_path / "transport").write_text(routes)
    tmp_path.chmod(0o755)  # Postfix's trivial-rewrite reads the table as postfix
    pf_port = free_port()
    pf = postfix.PostfixInstance(
        pf_port,
        f"transport_maps = texthash:{tmp_path / 'transport'}\nenable_long_queue_ids = yes\n",
    )
    mta = relay_system(
        tmp_path / "mta",
        "smtp unix - - n - - smtp\n",
        transport_maps=f"texthash:{tmp_path / 'transport'}",
    )
    pf.start()
    try:
        r = mta.mta("start")
        assert r.returncode == 0, r.stderr
        try:
            send_load(pf_port)
            send_load(mta.port)

            def settled(text: str) -> bool:
                return text.count("(") >= 3 and "*" not in text and "Requests" in text

            assert wait_for(lambda: settled(pf.postqueue("-p")), 30)
            got = {}

            def mta_listing() -> str:
                got["p"] = mta.mta("queue", "-p").stdout
                return got["p"]

            assert wait_for(lambda: settled(mta_listing()), 30), got.get("p")
            assert shape(got["p"]) == shape(pf.postqueue("-p"))
            assert entries(mta.mta("queue", "-j").stdout) == entries(pf.postqueue("-j"))
            # and qshape's table, to the column
            for args in (["deferred"], ["-s", "deferred"], ["-b", "4", "-t", "1", "deferred"]):
                theirs = subprocess.run(
                    ["qshape", "-c", str(pf.etc), *args], capture_output=True, text=True
                ).stdout
                assert mta.mta("qshape", *args).stdout == theirs
        finally:
            mta.stop()
    finally:
        pf.stop()
        refuser.close()
