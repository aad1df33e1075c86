"""milter.client and milter.chain against a scripted milter on a UNIX socket: what the MTA
sends under the negotiated flags (NO*, NR_*, HDR_LEADSPC, SETSYMLIST) and how replies and
failures become decisions."""

from __future__ import annotations

import asyncio
import io
import struct

import pytest

from mta.milter import protocol as P
from mta.milter.chain import MilterChain
from mta.milter.message import MilterMessage
from mta.milter.settings import MilterSettings, MilterSpec


class Scripted:
    """A milter that answers OPTNEG with (actions, protocol, symlists) and then each
    command with answers[cmd] (a list of packets; default: continue); records packets."""

    def __init__(self, path, protocol=0, actions=0, symlists=b"", answers=None, delays=None):
        self.path = str(path)
        self.protocol, self.actions, self.symlists = protocol, actions, symlists
        self.answers = answers or {}
        self.delays = delays or {}  # command -> seconds before its answer
        self.got: list[tuple[bytes, bytes]] = []

    async def __aenter__(self):
        self.server = await asyncio.start_unix_server(self.serve, self.path)
        return self

    async def __aexit__(self, *exc):
        self.server.close()

    async def serve(self, reader, writer):
        dec = P.PacketDecoder()
        while True:
            data = await reader.read(65536)
            if not data:
                break
            for cmd, payload in dec.feed(data):
                self.got.append((cmd, payload))
                if cmd == P.SMFIC_OPTNEG:
                    neg = struct.pack("!III", 6, self.actions, self.protocol) + self.symlists
                    writer.write(P.encode_packet(P.SMFIR_OPTNEG, neg))
                elif cmd in (P.SMFIC_MACRO, P.SMFIC_ABORT, P.SMFIC_QUIT):
                    continue
                elif cmd == P.SMFIC_HEADER and self.protocol & P.SMFIP_NR_HDR:
                    continue
                else:
                    if cmd in self.delays:
                        await asyncio.sleep(self.delays[cmd])
                    for packet in self.answers.get(cmd, [P.encode_packet(P.SMFIR_CONTINUE)]):
                        writer.write(packet)
            await writer.drain()
        writer.close()

    def commands(self):
        return [c for c, _ in self.got]


def settings(**kw):
    s = MilterSettings(defaults=MilterSpec("", "", None))
    s.macros = {"connect": ["j", "{client_addr}"], "helo": [], "eod": ["i"]}
    return s


def chain_for(path, **over):
    spec = MilterSpec(f"unix:{path}", "unix", str(path), **over)
    return MilterChain([spec], settings())


def message(raw=b"Subject: x\r\nX-A:  two\r\n\r\nbody\r\n"):
    return MilterMessage.parse(io.BytesIO(raw))


MACROS = {"j": "mx.example", "client_addr": "192.0.2.1", "i": "QID"}


def run(coro):
    return asyncio.run(coro)


def test_events_macros_and_header_values(tmp_path):
    async def go():
        async with Scripted(tmp_path / "m") as m:
            chain = chain_for(tmp_path / "m")
            assert (await chain.connect("c.example", "192.0.2.1", 25, MACROS)).action == "continue"
            await chain.helo("c.example", MACROS)
            await chain.mail("s@x", ["SIZE=10"], MACROS)
            await chain.rcpt("r@y", [], MACROS)
            await chain.data(MACROS)
            msg = message()
            assert (await chain.message(msg, MACROS)).action == "continue"
            chain.quit()
            await asyncio.sleep(0.05)
            return m

    m = run(go())
    cmds = m.commands()
    assert cmds[:3] == [P.SMFIC_OPTNEG, P.SMFIC_MACRO, P.SMFIC_CONNECT]
    assert m.got[1][1] == b"Cj\x00mx.example\x00{client_addr}\x00192.0.2.1\x00"
    mail = [p for c, p in m.got if c == P.SMFIC_MAIL][0]
    assert mail == b"<s@x>\x00SIZE=10\x00"
    headers = [p for c, p in m.got if c == P.SMFIC_HEADER]
    assert headers == [b"Subject\x00x\x00", b"X-A\x00 two\x00"]  # one leading space removed
    assert cmds[-4:] == [P.SMFIC_BODY, P.SMFIC_MACRO, P.SMFIC_BODYEOB, P.SMFIC_QUIT]
    assert m.got[-3] == (P.SMFIC_MACRO, b"Ei\x00QID\x00")  # end-of-data macros come first


def test_no_flags_and_leading_space(tmp_path):
    flags = P.SMFIP_NOHELO | P.SMFIP_NR_HDR | P.SMFIP_HDR_LEADSPC | P.SMFIP_NOBODY

    async def go():
        async with Scripted(tmp_path / "m", protocol=flags) as m:
            chain = chain_for(tmp_path / "m")
            await chain.connect("c", "192.0.2.1", 25, MACROS)
            await chain.helo("c", MACROS)
            await chain.mail("s@x", [], MACROS)
            assert (await chain.message(message(), MACROS)).action == "continue"
            return m

    m = run(go())
    assert P.SMFIC_HELO not in m.commands() and P.SMFIC_BODY not in m.commands()
    headers = [p for c, p in m.got if c == P.SMFIC_HEADER]
    assert headers == [b"Subject\x00 x\x00", b"X-A\x00  two\x00"]


def test_setsymlist_replaces_the_configured_macros(tmp_path):
    symlists = struct.pack("!I", P.SMFIM_CONNECT) + b"{client_addr}\x00"

    async def go():
        async with Scripted(tmp_path / "m", actions=P.SMFIF_SETSYMLIST, symlists=symlists) as m:
            await chain_for(tmp_path / "m").connect("c", "192.0.2.1", 25, MACROS)
            return m

    m = run(go())
    assert m.got[1] == (P.SMFIC_MACRO, b"C{client_addr}\x00192.0.2.1\x00")


@pytest.mark.parametrize(
    ("packet", "action", "reply"),
    [
        (P.encode_packet(P.SMFIR_REJECT), "reject", "550 5.7.1 Command rejected"),
        (
            P.encode_packet(P.SMFIR_TEMPFAIL),
            "tempfail",
            "451 4.7.1 Service unavailable - try again later",
        ),
        (P.encode_packet(P.SMFIR_SHUTDOWN), "shutdown", "421 4.7.0 Server closing connection"),
        (P.encode_packet(P.SMFIR_DISCARD), "discard", ""),
        (P.encode_packet(P.SMFIR_REPLYCODE, b"452 4.3.1 full\x00"), "tempfail", "452 4.3.1 full"),
    ],
)
def test_replies_become_decisions(tmp_path, packet, action, reply):
    async def go():
        async with Scripted(tmp_path / "m", answers={P.SMFIC_RCPT: [packet]}):
            chain = chain_for(tmp_path / "m")
            await chain.connect("c", "192.0.2.1", 25, MACROS)
            return await chain.rcpt("r@y", [], MACROS)

    d = run(go())
    assert (d.action, d.reply) == (action, reply)


def test_progress_then_final_reply(tmp_path):
    answers = {P.SMFIC_DATA: [P.encode_packet(P.SMFIR_PROGRESS), P.encode_packet(P.SMFIR_REJECT)]}

    async def go():
        async with Scripted(tmp_path / "m", answers=answers):
            chain = chain_for(tmp_path / "m")
            await chain.connect("c", "192.0.2.1", 25, MACROS)
            return await chain.data(MACROS)

    assert run(go()).action == "reject"


@pytest.mark.parametrize(
    "packets",
    [
        [P.encode_packet(P.SMFIR_REPLYCODE, b"250 fine\x00")],  # not 4xx/5xx
        [P.encode_packet(P.SMFIR_ADDHEADER, b"X\x00y\x00")],  # an edit before end of message
        [P.encode_packet(b"Z")],  # no such reply
        [b"\x7f\xff\xff\xff"],  # a length past the limit
    ],
)
def test_protocol_errors_give_the_default_action(tmp_path, packets):
    async def go():
        async with Scripted(tmp_path / "m", answers={P.SMFIC_HELO: packets}):
            chain = chain_for(tmp_path / "m", default_action="tempfail")
            await chain.connect("c", "192.0.2.1", 25, MACROS)
            first = await chain.helo("c", MACROS)
            second = await chain.mail("s@x", [], MACROS)  # no second warning
            return first, second

    first, second = run(go())
    assert first.reply == second.reply == "451 4.7.1 Service unavailable - try again later"


def test_edits_need_the_action_announced(tmp_path):
    answers = {
        P.SMFIC_BODYEOB: [
            P.encode_packet(P.SMFIR_ADDHEADER, b"X\x00y\x00"),
            P.encode_packet(P.SMFIR_CONTINUE),
        ]
    }

    async def go():
        async with Scripted(tmp_path / "m", actions=0, answers=answers):
            chain = chain_for(tmp_path / "m", default_action="accept")
            await chain.connect("c", "192.0.2.1", 25, MACROS)
            msg = message()
            d = await chain.message(msg, MACROS)
            return d, msg

    d, msg = run(go())
    assert d.action == "continue"  # accept: the failed milter is passed over
    assert [n for n, _ in msg.headers] == [b"Subject", b"X-A"]


def test_body_replacement_too_big_is_a_failure(tmp_path):
    big = P.encode_packet(P.SMFIR_REPLBODY, b"x" * 5000)
    answers = {P.SMFIC_BODYEOB: [big, P.encode_packet(P.SMFIR_CONTINUE)]}

    async def go():
        async with Scripted(tmp_path / "m", actions=P.SMFIF_CHGBODY, answers=answers):
            spec = MilterSpec(f"unix:{tmp_path}/m", "unix", str(tmp_path / "m"))
            chain = MilterChain([spec], settings(), size_limit=1000)
            await chain.connect("c", "192.0.2.1", 25, MACROS)
            return await chain.message(message(), MACROS)

    assert run(go()).action == "tempfail"


def test_a_shorter_timeout_after_a_longer_one_still_ends_the_wait(tmp_path):
    """The connection's one timer was armed for the 30 s command timeout; the content
    phase's 0.3 s must end the silent end-of-headers wait at 0.3 s, not 30 s."""

    async def go():
        async with Scripted(tmp_path / "m", delays={P.SMFIC_EOH: 60}):
            chain = chain_for(
                tmp_path / "m", command_timeout=30, content_timeout=0.3, default_action="tempfail"
            )
            await chain.connect("c", "192.0.2.1", 25, MACROS)
            loop = asyncio.get_running_loop()
            start = loop.time()
            decision = await chain.message(message(), MACROS)
            return decision, loop.time() - start

    decision, took = run(go())
    assert decision.action == "tempfail"
    assert 0.25 <= took < 5


def test_a_timer_due_before_a_longer_wait_ends_does_not_end_it(tmp_path):
    """The timer armed for connect's 0.2 s deadline comes due while the content phase
    waits up to 5 s for an answer that takes 0.6 s: the wait goes on and succeeds."""

    async def go():
        async with Scripted(tmp_path / "m", delays={P.SMFIC_HEADER: 0.6}):
            chain = chain_for(tmp_path / "m", command_timeout=0.2, content_timeout=5)
            await chain.connect("c", "192.0.2.1", 25, MACROS)
            return await chain.message(message(), MACROS), chain.clients[0].failed

    decision, failed = run(go())
    assert decision.action == "continue" and failed is None
