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


def test_a_gap_keeps_the_highest_run_so_the_excluded_protocol_stays_off():
    assert protocol_range(">=TLSv1, !TLSv1.2") == (PROTOCOLS["TLSv1.3"],) * 2


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
    """Every protocol judged on its own; then the top run of allowed ones."""
    words = value.replace(",", " ").replace(":", " ").split()
    included = [w for w in words if w in PROTOCOLS]
    allowed = []
    for name in NAMES:
        ok = ("!" + name) not in words and (not included or name in included)
        for w in words:
            if w.startswith(">=") and PROTOCOLS[name] < PROTOCOLS[w[2:]]:
                ok = False
            if w.startswith("<=") and PROTOCOLS[name] > PROTOCOLS[w[2:]]:
                ok = False
        allowed.append(ok)
    if not any(allowed):
        return None
    top = max(i for i, ok in enumerate(allowed) if ok)
    bottom = top
    while bottom > 0 and allowed[bottom - 1]:
        bottom -= 1
    return PROTOCOLS[NAMES[bottom]], PROTOCOLS[NAMES[top]]


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
