"""memcache: the reply parser, key checks and the configuration file, without a server
(tests/interop/test_dict_memcache.py runs the table against a real memcached)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mta.maps import MapError
from mta.maps.dict_memcache import (
    MC_DEFAULTS,
    check_key,
    parse_get_reply,
    parse_server,
    read_settings,
    split_domains,
)

LINE, DATA = 1024, 10240


def reply(key: bytes, value: bytes, flags: int = 0, cas: bool = False) -> bytes:
    head = b"VALUE %s %d %d" % (key, flags, len(value)) + (b" 17" if cas else b"")
    return head + b"\r\n" + value + b"\r\nEND\r\n"


def feed_in_chunks(data: bytes, cuts: list[int]):
    """Feed growing prefixes as a socket would deliver them; the first complete answer."""
    points = sorted({min(c, len(data)) for c in cuts} | {len(data)})
    for p in points:
        done = parse_get_reply(data[:p], LINE, DATA)
        if done is not None:
            return done, p
    return None, len(data)


def test_found_not_found_and_cas_form():
    assert parse_get_reply(b"END\r\n", LINE, DATA) == (None, 5)
    assert parse_get_reply(reply(b"k", b"v a l"), LINE, DATA) == (b"v a l", 25)
    assert parse_get_reply(reply(b"k", b"", cas=True), LINE, DATA)[0] == b""


@pytest.mark.parametrize(
    "data, message",
    [
        (b"ERROR\r\n", "unexpected reply"),
        (b"SERVER_ERROR out of memory\r\n", "unexpected reply"),
        (b"VALUE k x 3\r\nabc\r\nEND\r\n", "malformed reply"),
        (b"VALUE k 0 3\r\nabcd\r\nEND\r\n", "not followed by CRLF"),
        (b"VALUE k 0 3\r\nabc\r\nEXTRA\r\n", "not followed by END"),
        (b"VALUE k 0 99999\r\n", "longer than data_size_limit"),
        (b"V" * 1030, "longer than 1024 bytes"),
    ],
)
def test_bad_replies_are_errors(data, message):
    with pytest.raises(ValueError, match=message):
        parse_get_reply(data, LINE, DATA)


@given(
    st.binary(max_size=300),
    st.integers(0, 2**32 - 1),
    st.booleans(),
    st.lists(st.integers(0, 400), max_size=8),
)
def test_any_value_in_any_chunks_is_read_back(value, flags, cas, cuts):
    data = reply(b"key", value, flags, cas)
    (found, consumed), fed = feed_in_chunks(data, cuts)
    assert found == value and consumed == len(data) == fed


@given(st.binary(max_size=200), st.integers(8, 100), st.integers(0, 100))
def test_garbage_is_more_needed_an_answer_or_a_value_error(data, line_limit, data_limit):
    try:
        done = parse_get_reply(data, line_limit, data_limit)
    except ValueError:
        return
    if done is not None:
        value, consumed = done
        assert consumed <= len(data)
        assert value is None or len(value) <= data_limit


@pytest.mark.parametrize(
    "key, ok",
    [
        (b"a@example.com", True),
        (b"k" * 250, True),
        (b"k" * 251, False),
        (b"", False),
        (b"a b", False),
        (b"a\r\nflush_all", False),
        (b"tab\tkey", False),
        (b"del\x7f", False),
        ("ü".encode(), True),
    ],
)
def test_keys_memcached_can_take(key, ok):
    assert (check_key(key) == "") is ok


@given(st.binary(max_size=300))
def test_a_valid_key_never_holds_a_command_separator(key):
    if check_key(key) == "":
        assert not any(c in key for c in b" \r\n\t\x00") and 0 < len(key) <= 250


def test_settings_defaults_and_values(tmp_path):
    cf = tmp_path / "mc.cf"
    cf.write_text("# comment\nmemcache = inet:[::1]:11211\nttl = 60\nkey_format = v:%s\n  \n")
    values = read_settings(str(cf))
    assert values == {
        **MC_DEFAULTS,
        "memcache": "inet:[::1]:11211",
        "ttl": "60",
        "key_format": "v:%s",
    }
    assert MC_DEFAULTS["memcache"] == "inet:localhost:11211"
    assert (MC_DEFAULTS["data_size_limit"], MC_DEFAULTS["line_size_limit"]) == ("10240", "1024")
    assert (MC_DEFAULTS["max_try"], MC_DEFAULTS["retry_pause"], MC_DEFAULTS["timeout"]) == (
        "2",
        "1",
        "2",
    )


@pytest.mark.parametrize(
    "text, message",
    [
        ("memcache_server = inet:a:1\n", "line 1: unknown parameter 'memcache_server'"),
        ("just words\n", 'line 1: expected "name = value"'),
        ("timeout = 2s\n", "timeout must be a number"),
        ("line_size_limit = 2\n", "line_size_limit 8 or more"),
        ("key_format = %s%\n", "key_format: a lone %"),
    ],
)
def test_bad_settings_name_the_file(tmp_path, text, message):
    cf = tmp_path / "mc.cf"
    cf.write_text(text)
    with pytest.raises(MapError) as info:
        read_settings(str(cf))
    assert str(info.value).startswith(str(cf)) and message in str(info.value)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("inet:127.0.0.1:11211", ("127.0.0.1", "11211")),
        ("inet:[fc00::3]:11211", ("fc00::3", "11211")),
        ("inet:mc.example.com:memcache", ("mc.example.com", "memcache")),
        ("unix:/run/mc.sock", "/run/mc.sock"),
    ],
)
def test_server_addresses(text, expected):
    assert parse_server("f", text)[1] == expected


@pytest.mark.parametrize("text", ["tcp:a:1", "inet:a", "inet::1", "unix:", "inet:fc00::3:1"])
def test_bad_server_addresses(text):
    with pytest.raises(MapError, match="expected inet:host:port or unix:/path"):
        parse_server("f", text)


def test_domain_list_keeps_inline_tables_whole():
    assert split_domains("a.example, inline:{ b=1 c=2 },hash:/x  d") == [
        "a.example",
        "inline:{ b=1 c=2 }",
        "hash:/x",
        "d",
    ]
