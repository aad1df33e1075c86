"""The XCLIENT / XFORWARD attribute parser (smtpd/xattrs.py)."""

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mta.smtpd.xattrs import TEMPUNAVAIL, UNAVAILABLE, XattrError, parse_xattrs
from mta.smtpd.xclient import XCLIENT_NAMES
from mta.smtpd.xforward import XFORWARD_NAMES


def xtext(value: str) -> bytes:
    return "".join(
        c if 33 <= ord(c) <= 126 and c not in "+=" else f"+{ord(c):02X}" for c in value
    ).encode()


def test_pairs_come_back_in_order_with_names_upper_cased():
    pairs = parse_xattrs(b"name=Host.Example addr=192.0.2.1 Port=25", "XFORWARD", XFORWARD_NAMES)
    assert pairs == [("NAME", "host.example"), ("ADDR", "192.0.2.1"), ("PORT", "25")]


def test_ipv6_prefix_is_dropped_in_any_case():
    assert parse_xattrs(b"ADDR=ipv6:2001:DB8::1", "XCLIENT", XCLIENT_NAMES) == [
        ("ADDR", "2001:db8::1")
    ]


def test_unavailable_in_any_case():
    pairs = parse_xattrs(b"NAME=[UnAvailable] HELO=[unavailable]", "XFORWARD", XFORWARD_NAMES)
    assert pairs == [("NAME", UNAVAILABLE), ("HELO", UNAVAILABLE)]


def test_tempunavail_only_for_names():
    assert parse_xattrs(b"NAME=[tempunavail]", "XCLIENT", XCLIENT_NAMES) == [("NAME", TEMPUNAVAIL)]
    with pytest.raises(XattrError) as info:
        parse_xattrs(b"ADDR=[TEMPUNAVAIL]", "XCLIENT", XCLIENT_NAMES)
    assert info.value.reply == "501 5.5.4 Bad ADDR syntax: [TEMPUNAVAIL]"


def test_xclient_proto_is_smtp_or_esmtp():
    assert parse_xattrs(b"PROTO=esmtp", "XCLIENT", XCLIENT_NAMES) == [("PROTO", "ESMTP")]
    with pytest.raises(XattrError):
        parse_xattrs(b"PROTO=QMQP", "XCLIENT", XCLIENT_NAMES)
    assert parse_xattrs(b"PROTO=QMQP", "XFORWARD", XFORWARD_NAMES) == [("PROTO", "QMQP")]


def test_helo_specials_become_question_marks():
    assert parse_xattrs(b"HELO=a+3Cb+3E+20c", "XFORWARD", XFORWARD_NAMES) == [("HELO", "a?b??c")]


def test_value_longer_than_255_is_refused():
    with pytest.raises(XattrError) as info:
        parse_xattrs(b"IDENT=" + b"x" * 256, "XFORWARD", XFORWARD_NAMES)
    assert info.value.reply.startswith("501 5.5.4 Bad IDENT syntax: ")


@given(st.binary(max_size=300))
def test_any_input_gives_pairs_or_a_one_line_501(data):
    try:
        pairs = parse_xattrs(data, "XFORWARD", XFORWARD_NAMES)
    except XattrError as exc:
        assert exc.reply.startswith("501 5.5.4 ")
        assert "\r" not in exc.reply and "\n" not in exc.reply
        assert exc.reply.isprintable()
        return
    assert pairs
    for name, value in pairs:
        assert name in XFORWARD_NAMES
        # values reach logs and Received: headers: printable ASCII, no spaces
        assert value and value.isascii() and value.isprintable() and " " not in value


@given(st.ip_addresses())
def test_any_address_round_trips(addr):
    text = f"IPV6:{addr}" if addr.version == 6 else str(addr)
    ((name, value),) = parse_xattrs(b"ADDR=" + text.encode(), "XCLIENT", XCLIENT_NAMES)
    assert name == "ADDR" and ipaddress.ip_address(value) == addr


@given(st.from_regex(r"[A-Za-z0-9_.-]{1,60}", fullmatch=True))
def test_any_host_name_round_trips_through_xtext(host):
    assert parse_xattrs(b"NAME=" + xtext(host), "XFORWARD", XFORWARD_NAMES) == [
        ("NAME", host.lower())
    ]


@given(st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=80))
def test_any_printable_ident_round_trips_through_xtext(ident):
    if not ident or ident.upper() == UNAVAILABLE:
        return
    assert parse_xattrs(b"IDENT=" + xtext(ident), "XFORWARD", XFORWARD_NAMES) == [("IDENT", ident)]
