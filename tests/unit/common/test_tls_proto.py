"""common.tls_proto: Postfix's protocol lists and cipher grades."""

import ssl

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mta.common.tls_proto import (
    PROTOCOLS,
    apply_protocols,
    check_exclusions,
    cipher_string,
    protocol_range,
)

NAMES = list(PROTOCOLS)


class Cfg:
    """The one method cipher_string reads, over Postfix's default lists."""

    def __init__(self, **values: str) -> None:
        self.values = {
            "tls_high_cipherlist": "aNULL:-aNULL:HIGH:@STRENGTH",
            "tls_medium_cipherlist": "aNULL:-aNULL:HIGH:MEDIUM:+RC4:@STRENGTH",
            "tls_null_cipherlist": "eNULL:!aNULL",
            **values,
        }

    def get(self, name: str) -> str:
        return self.values[name]


@pytest.mark.parametrize(
    "value, want",
    [
        (">=TLSv1", ("TLSv1", "TLSv1.3")),
        (">=TLSv1.2", ("TLSv1.2", "TLSv1.3")),
        ("!SSLv2, !SSLv3, !TLSv1, !TLSv1.1", ("TLSv1.2", "TLSv1.3")),
        ("!SSLv2:!SSLv3", ("TLSv1", "TLSv1.3")),
        ("TLSv1.2 TLSv1.3", ("TLSv1.2", "TLSv1.3")),
        ("TLSv1.2", ("TLSv1.2", "TLSv1.2")),
        (">=TLSv1, <=TLSv1.2", ("TLSv1", "TLSv1.2")),
        (">=0x0303", ("TLSv1.2", "TLSv1.3")),
        (">=303", ("TLSv1.2", "TLSv1.3")),
        ("", ("SSLv2", "TLSv1.3")),
    ],
)
def test_postfix_examples(value, want):
    assert protocol_range(value) == (PROTOCOLS[want[0]], PROTOCOLS[want[1]])


def test_a_gap_ends_the_range_as_openssl_and_postfix_read_exclusions():
    # postconf.5: "!SSLv2, !SSLv3, !TLSv1.1" also disables everything above TLSv1.1
    assert protocol_range("!SSLv2, !SSLv3, !TLSv1.1") == (PROTOCOLS["TLSv1"],) * 2
    assert protocol_range(">=TLSv1, !TLSv1.2") == (PROTOCOLS["TLSv1"], PROTOCOLS["TLSv1.1"])


def test_a_bound_past_the_newest_name_is_kept():
    assert protocol_range(">=TLSv1, <=0305") == (PROTOCOLS["TLSv1"], 0x0305)


@pytest.mark.parametrize("value", ["TLSv9", "!tlsv1", ">=foo", "<=TLS1.2", "SSLv4"])
def test_unknown_names_are_errors(value):
    with pytest.raises(ValueError, match="unknown TLS protocol"):
        protocol_range(value)


@pytest.mark.parametrize("value", [">=TLSv1.3, <=TLSv1.2", "!TLSv1.3, >=TLSv1.3", ">=0305"])
def test_nothing_left_is_an_error(value):
    with pytest.raises(ValueError, match="no TLS protocol left"):
        protocol_range(value)


def reference(value: str) -> tuple[int, int] | None:
    """OpenSSL's reading: the names and exclusions give one run from the lowest
    enabled protocol up to the first gap; the bounds then cut it; TLS must remain."""
    words = value.replace(",", " ").replace(":", " ").split()
    included = [w for w in words if w in PROTOCOLS]
    enabled = [("!" + n) not in words and (not included or n in included) for n in NAMES]
    if not any(enabled):
        return None
    first = enabled.index(True)
    last = first
    while last + 1 < len(NAMES) and enabled[last + 1]:
        last += 1
    run = [
        i
        for i in range(first, last + 1)
        if all(
            not (w.startswith(">=") and PROTOCOLS[NAMES[i]] < PROTOCOLS[w[2:]])
            and not (w.startswith("<=") and PROTOCOLS[NAMES[i]] > PROTOCOLS[w[2:]])
            for w in words
        )
    ]
    run = [i for i in run if PROTOCOLS[NAMES[i]] >= PROTOCOLS["TLSv1"]] and run
    if not run:
        return None
    return PROTOCOLS[NAMES[run[0]]], PROTOCOLS[NAMES[run[-1]]]


WORDS = st.sampled_from(NAMES).flatmap(lambda n: st.sampled_from([n, "!" + n, ">=" + n, "<=" + n]))


@given(st.lists(WORDS, max_size=6), st.sampled_from([", ", " ", ":", ","]))
def test_parser_agrees_with_the_reference(words, sep):
    value = sep.join(words)
    want = reference(value)
    if want is None:
        with pytest.raises(ValueError):
            protocol_range(value)
    else:
        assert protocol_range(value) == want


def test_apply_protocols_sets_the_context_bounds():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    apply_protocols(ctx, *protocol_range(">=TLSv1.2, <=TLSv1.2"))
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.maximum_version == ssl.TLSVersion.TLSv1_2


def test_apply_protocols_below_tls1_is_the_lowest_supported():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    apply_protocols(ctx, *protocol_range(""))
    assert ctx.minimum_version == ssl.TLSVersion.MINIMUM_SUPPORTED


def test_cipher_string_of_a_grade_with_exclusions():
    cfg = Cfg()
    assert cipher_string(cfg, "high", "") == "aNULL:-aNULL:HIGH:@STRENGTH"
    got = cipher_string(cfg, "Medium", "aNULL, RC4:3DES")
    assert got == "aNULL:-aNULL:HIGH:MEDIUM:+RC4:@STRENGTH:!aNULL:!RC4:!3DES"
    ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).set_ciphers(got)  # OpenSSL takes it


@pytest.mark.parametrize("grade", ["strong", "", "HIGH+"])
def test_unknown_grade_is_an_error(grade):
    with pytest.raises(ValueError, match="unknown cipher grade"):
        cipher_string(Cfg(), grade, "")


def test_an_exclusion_with_a_stray_character_is_an_error():
    with pytest.raises(ValueError, match="invalid cipher exclusion: RC4!"):
        check_exclusions("aNULL RC4!")
