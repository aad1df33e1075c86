"""A Postfix main.cf naming hash: tables works once "mta map hash:FILE" has built them.

The table is built with the mta command, named hash:FILE in main.cf
(virtual_alias_maps, and through proxymap), and a message sent with
smtplib to the real smtpd under the real master is queued for the
rewritten recipient. The log says once which file serves the table.
"""

from __future__ import annotations

import os
import re
import smtplib

import pytest

from mta.queue.queue_file import read_queue_file
from tests.support.running import Instance, free_port, wait_for

pytestmark = [pytest.mark.interop, pytest.mark.timeout(90)]


def queued(inst: Instance) -> list[str]:
    out = []
    for root, _, files in os.walk(os.path.join(inst.queue, "incoming")):
        out += [os.path.join(root, f) for f in files if not f.startswith(".")]
    return sorted(out)


@pytest.mark.parametrize("spec", ["hash:{}", "btree:{}", "proxy:hash:{}"])
def test_virtual_alias_maps_hash_rewrites_through_smtpd_and_cleanup(tmp_path, spec):
    source = tmp_path / "virtual"
    source.write_text("Alias@Example.com real@example.net\n")
    port = free_port()
    table = spec.format(source)
    inst = Instance(
        tmp_path,
        f"127.0.0.1:{port} inet n - n - - smtpd\n"
        "cleanup unix n - n - 0 cleanup\n"
        "proxymap unix - - n - - proxymap\n",
        {
            "myhostname": "mx.test.example",
            "mydestination": "",
            "mynetworks": "127.0.0.1/32",
            "local_recipient_maps": "",
            "smtpd_peername_lookup": "no",
            "virtual_alias_maps": table,
        },
    )
    built = inst.mta("map", table.removeprefix("proxy:"))
    assert (built.returncode, built.stderr) == (0, "")
    assert os.path.exists(f"{source}.lmdb")
    checked = inst.mta("check")
    assert checked.returncode == 0, checked.stderr
    assert inst.mta("start").returncode == 0
    try:
        assert inst.mta("map", "-q", "alias@example.com", table).stdout == "real@example.net\n"
        for _ in range(2):
            with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
                client.sendmail("a@example.org", ["alias@example.com"], b"Subject: x\r\n\r\nhi\r\n")
        assert wait_for(lambda: len(queued(inst)) == 2, 10)
        for path in queued(inst):
            msg = read_queue_file(path)
            assert [r.address for r in msg.recipients] == ["real@example.net"]
            assert [r.orig for r in msg.recipients] == ["alias@example.com"]
        kind_and_file = table.removeprefix("proxy:")
        note = f"{kind_and_file} is served from the LMDB file {source}.lmdb"
        log = inst.wait_log(note)
        # once per process that opened it (mta check and start open it too), and by
        # the service that served the lookups: smtpd (cleanup runs inside it) or proxymap
        noted = [line.split(": ", 1)[0].split()[-1] for line in log.splitlines() if note in line]
        assert len(noted) == len(set(noted)), log
        assert any(re.match(r"mta/(smtpd|proxymap)\[\d+\]$", who) for who in noted), log
    finally:
        inst.stop()
