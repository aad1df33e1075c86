"""qmqpd and VERP: a sender prefix@origin-@[] asks for it, as ezmlm sends."""

from __future__ import annotations

import asyncio

import pytest

from mta import log
from mta.common.verp import VERP_ATTR
from mta.config import load_config
from mta.qmqpd import QmqpServer, netstring, split_verp_sender
from mta.queue.queue_file import read_queue_file
from tests.support.instance import incoming_files, make_instance


@pytest.mark.parametrize(
    "sender, expected",
    [
        ("list-@example.org-@[]", ("list@example.org", "-=")),
        ("list+@example.org-@[]", ("list@example.org", "+=")),
        ("l-@x-@[]", ("l@x", "-=")),
        ("list-@example.org", ("list-@example.org", None)),
        ("-@example.org-@[]", ("-@example.org-@[]", None)),  # no prefix before the delimiter
        ("list-@-@[]", ("list-@-@[]", None)),  # no origin
        ("", ("", None)),
    ],
)
def test_split_verp_sender(sender, expected):
    assert split_verp_sender(sender) == expected


def exchange(tmp_path, sender: bytes) -> tuple[bytes, str]:
    """One QMQP exchange with an in-process qmqpd on 127.0.0.1: (reply, cdir)."""
    cdir = make_instance(tmp_path, "qmqpd_authorized_clients = 127.0.0.1\nqmqpd_error_delay = 0\n")
    cfg = load_config(str(cdir))
    log.init("qmqpd", cfg)

    async def main() -> bytes:
        server = await asyncio.start_server(QmqpServer(cfg).handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        body = netstring(b"Subject: q\n\nhi\n") + netstring(sender) + netstring(b"u@x.example")
        writer.write(netstring(body))
        size = await asyncio.wait_for(reader.readuntil(b":"), 10)
        reply = size + await asyncio.wait_for(reader.readexactly(int(size[:-1]) + 1), 10)
        writer.close()
        server.close()
        await server.wait_closed()
        return reply

    return asyncio.run(main()), cdir


def test_verp_sender_is_queued_with_its_delimiters(tmp_path):
    reply, cdir = exchange(tmp_path, b"list-@example.org-@[]")
    assert b":K" in reply
    (path,) = incoming_files(cdir)
    msg = read_queue_file(path)
    assert (msg.sender, msg.attrs[VERP_ATTR]) == ("list@example.org", "-=")


def test_a_delimiter_outside_the_filter_is_refused(tmp_path):
    reply, cdir = exchange(tmp_path, b"list_@example.org-@[]")
    assert b":DError: bad VERP delimiters" in reply
    assert incoming_files(cdir) == []
