"""milter.protocol: packet framing, reply decoding and OPTNEG, with property tests for the
decoder (any bytes, cut anywhere: packets or a MilterProtocolError, never more memory than
the limit)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mta.milter import protocol as P

REPLY_CMDS = [
    P.SMFIR_ACCEPT,
    P.SMFIR_CONTINUE,
    P.SMFIR_REJECT,
    P.SMFIR_TEMPFAIL,
    P.SMFIR_DISCARD,
    P.SMFIR_SKIP,
    P.SMFIR_PROGRESS,
    P.SMFIR_REPLYCODE,
    P.SMFIR_ADDHEADER,
    P.SMFIR_INSHEADER,
    P.SMFIR_CHGHEADER,
    P.SMFIR_REPLBODY,
    P.SMFIR_ADDRCPT,
    P.SMFIR_ADDRCPT_PAR,
    P.SMFIR_DELRCPT,
    P.SMFIR_CHGFROM,
    P.SMFIR_QUARANTINE,
]


def test_a_packet_is_length_command_data():
    assert P.encode_packet(P.SMFIC_HELO, P.cstrings("mx.example")) == (
        b"\x00\x00\x00\x0cHmx.example\x00"
    )


def test_connect_carries_family_port_and_address():
    data = P.encode_connect("client.example", "4", 2525, "192.0.2.1")
    assert data[4:] == b"Cclient.example\x004\x09\xdd192.0.2.1\x00"


def test_connect_of_unknown_family_has_no_port():
    assert P.encode_connect("local", "U", 0, "")[4:] == b"Clocal\x00U"


def test_macros_name_the_command_they_belong_to():
    packet = P.encode_macros(P.SMFIC_RCPT, [("{rcpt_addr}", "u@example"), ("i", "Q1")])
    assert packet[4:] == b"DR{rcpt_addr}\x00u@example\x00i\x00Q1\x00"


def test_optneg_offers_version_actions_and_protocol():
    packet = P.encode_optneg(6, P.SMFIF_ALL_V6, P.SMFIP_ALL_V6)
    assert struct.unpack("!IcIII", packet) == (13, b"O", 6, 0x1FF, 0x1FFFFF)


def test_optneg_reply_with_symlists():
    data = struct.pack("!III", 6, 0x101, P.SMFIP_NR_HDR | P.SMFIP_HDR_LEADSPC)
    data += struct.pack("!I", P.SMFIM_CONNECT) + b"j {client_addr}\x00"
    data += struct.pack("!I", P.SMFIM_EOM) + b"i\x00"
    neg = P.parse_optneg(data)
    assert (neg.version, neg.actions) == (6, 0x101)
    assert neg.protocol == P.SMFIP_NR_HDR | P.SMFIP_HDR_LEADSPC
    assert neg.symlists == {P.SMFIM_CONNECT: ["j", "{client_addr}"], P.SMFIM_EOM: ["i"]}


@pytest.mark.parametrize(
    "data",
    [
        b"\x00" * 11,
        struct.pack("!III", 6, 0, 0) + b"\x00\x00",
        struct.pack("!IIII", 6, 0, 0, 9) + b"x\x00",
        struct.pack("!IIII", 6, 0, 0, 1) + b"no terminator",
    ],
)
def test_bad_optneg_replies_are_protocol_errors(data):
    with pytest.raises(P.MilterProtocolError):
        P.parse_optneg(data)


def test_reply_decoding():
    assert P.parse_reply(P.SMFIR_ADDHEADER, b"X-A\x00v\x00").strings == [b"X-A", b"v"]
    chg = P.parse_reply(P.SMFIR_CHGHEADER, struct.pack("!I", 2) + b"X-B\x00\x00")
    assert (chg.index, chg.strings) == (2, [b"X-B", b""])
    assert P.parse_reply(P.SMFIR_ADDRCPT_PAR, b"<a@b>\x00NOTIFY=NEVER\x00").strings == [
        b"<a@b>",
        b"NOTIFY=NEVER",
    ]
    assert P.parse_reply(P.SMFIR_CHGFROM, b"<s@x>\x00").strings == [b"<s@x>"]
    assert P.parse_reply(P.SMFIR_REPLBODY, b"raw\r\n").raw == b"raw\r\n"


@pytest.mark.parametrize(
    ("cmd", "data"),
    [
        (P.SMFIR_ADDHEADER, b"X-A\x00"),  # one string, two needed
        (P.SMFIR_ADDHEADER, b"X-A\x00v"),  # no terminator
        (P.SMFIR_INSHEADER, b"\x00\x00"),  # too short for the index
        (P.SMFIR_CHGFROM, b""),
        (b"Z", b""),  # no such reply
    ],
)
def test_malformed_replies(cmd, data):
    with pytest.raises(P.MilterProtocolError):
        P.parse_reply(cmd, data)


def test_decoder_takes_bytes_cut_anywhere():
    stream = P.encode_packet(P.SMFIR_CONTINUE) + P.encode_packet(P.SMFIR_ADDHEADER, b"A\x00b\x00")
    dec = P.PacketDecoder()
    got = []
    for i in range(len(stream)):
        got += dec.feed(stream[i : i + 1])
    assert got == [(b"c", b""), (b"h", b"A\x00b\x00")]


def test_decoder_refuses_a_huge_length_before_buffering():
    dec = P.PacketDecoder(limit=1000)
    with pytest.raises(P.MilterProtocolError, match="unreasonable packet length"):
        dec.feed(struct.pack("!I", 1 << 20))
    assert len(dec.buf) == 4


def test_decoder_refuses_length_zero():
    with pytest.raises(P.MilterProtocolError, match="bad packet length"):
        P.PacketDecoder().feed(b"\x00\x00\x00\x00c")


packets = st.lists(st.tuples(st.sampled_from(REPLY_CMDS), st.binary(max_size=300)), max_size=8)


@settings(max_examples=200, deadline=None)
@given(packets, st.lists(st.integers(min_value=1, max_value=50), min_size=1))
def test_decoder_returns_what_was_encoded_however_it_is_cut(items, cuts):
    stream = b"".join(P.encode_packet(c, d) for c, d in items)
    dec = P.PacketDecoder()
    got, pos, i = [], 0, 0
    while pos < len(stream):
        step = cuts[i % len(cuts)]
        got += dec.feed(stream[pos : pos + step])
        pos += step
        i += 1
    assert got == items
    assert not dec.buf


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=2000),
    st.integers(min_value=1, max_value=512),
    st.integers(min_value=1, max_value=64),
)
def test_garbage_gives_packets_or_a_protocol_error_within_the_limit(data, limit, step):
    dec = P.PacketDecoder(limit=limit)
    try:
        for pos in range(0, len(data), step):
            for cmd, payload in dec.feed(data[pos : pos + step]):
                assert len(cmd) == 1 and len(payload) <= limit
                try:
                    P.parse_reply(cmd, payload)
                except P.MilterProtocolError:
                    pass
            # what waits is one unfinished packet, never more than the limit allows
            assert len(dec.buf) < limit + 5
    except P.MilterProtocolError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_optneg_parser_never_crashes(data):
    try:
        P.parse_optneg(data)
    except P.MilterProtocolError:
        pass
