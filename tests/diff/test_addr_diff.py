"""Address kernels: compiled and reference versions agree, and both are right."""

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mta.trivial_rewrite import address as A
from tests.oracles.email_oracle import addresses

NAMES = [
    "parse_path",
    "split_addr",
    "quote_local",
    "unquote_local",
    "canon_addr",
    "scan_addr_list",
    "parse_addr_list",
]


def impls(name):
    out = [pytest.param(getattr(A, name + "_ref"), id="ref")]
    if getattr(A, name + "_c") is not None:
        out.append(pytest.param(getattr(A, name + "_c"), id="c"))
    return out


def both(name):
    return pytest.mark.parametrize("fn", impls(name))


def test_extension_loaded():
    if os.environ.get("MTA_NO_EXTENSIONS"):
        pytest.skip("pure build")
    for name in NAMES:
        assert getattr(A, name) is getattr(A, name + "_c")


# ---- parse_path


@both("parse_path")
def test_path_with_params(fn):
    assert fn(b"<user@example.org> SIZE=100") == (b"user@example.org", 18)


@both("parse_path")
def test_null_path(fn):
    assert fn(b"<>") == (b"", 2)


@both("parse_path")
def test_source_route_dropped(fn):
    assert fn(b"<@a.example,@b.example:u@x.org>")[0] == b"u@x.org"


@both("parse_path")
def test_quoted_local_kept(fn):
    assert fn(b'<"john smith"@x.org>')[0] == b'"john smith"@x.org'


@both("parse_path")
def test_quoted_bracket_inside(fn):
    assert fn(b'<"a>b"@x.org> BODY=8BITMIME') == (b'"a>b"@x.org', 13)


@both("parse_path")
def test_unbracketed_accepted(fn):
    assert fn(b" user@x.org SIZE=1") == (b"user@x.org", 11)


@both("parse_path")
def test_escaped_quote_inside_quotes(fn):
    assert fn(b'<"a\\"@b"@x.org>')[0] == b'"a\\"@b"@x.org'


@both("parse_path")
def test_strict_needs_brackets(fn):
    with pytest.raises(A.AddrError):
        fn(b"user@x.org", strict=True)
    assert fn(b"<user@x.org>", strict=True) == (b"user@x.org", 12)


@both("parse_path")
def test_address_literal(fn):
    assert fn(b"<u@[192.0.2.1]>")[0] == b"u@[192.0.2.1]"


@both("parse_path")
def test_bare_user(fn):
    assert fn(b"<postmaster>")[0] == b"postmaster"


@both("parse_path")
@pytest.mark.parametrize(
    "bad",
    [
        b"<a@>",
        b"<a",
        b"<a b@x>",
        b"<a@x>y",
        b"",
        b"<a<b>>",
        b"<@x>",
        b'<"a@x>',
        b"<a@x..y>",
        b"<a\x01@x>",
        b"<\xff@x>",
        b"<a@[x>",
        b'<a"b@x.org>',
        b'<"a"b@x.org>',
        b"<\\@..]>",
    ],
)
def test_bad_paths_raise(fn, bad):
    with pytest.raises(A.AddrError):
        fn(bad)


# ---- split, quote, canon


@both("split_addr")
def test_split_last_unquoted_at(fn):
    assert fn('"a@b"@x.org') == ('"a@b"', "x.org")
    assert fn("a@b@c") == ("a@b", "c")
    assert fn("user") == ("user", None)
    assert fn("user@") == ("user", "")


@both("quote_local")
def test_quote_needed(fn):
    assert fn("john smith") == '"john smith"'
    assert fn('a"b') == '"a\\"b"'
    assert fn(".a") == '".a"'
    assert fn("a..b") == '"a..b"'
    assert fn("") == '""'


@both("quote_local")
def test_quote_not_needed(fn):
    assert fn("john.smith+tag") == "john.smith+tag"
    assert fn("jösé") == "jösé"


@both("unquote_local")
def test_unquote(fn):
    assert fn('"john smith"') == "john smith"
    assert fn('"a\\"b"') == 'a"b'
    assert fn('"a".b') == "a.b"
    assert fn("plain") == "plain"


@both("canon_addr")
def test_canon_lowercases_domain_only(fn):
    assert fn("John@Example.ORG") == "John@example.org"
    assert fn('"A@B"@X') == '"A@B"@x'
    assert fn("User") == "User"


LOCALS = st.text(
    alphabet=st.characters(min_codepoint=32, max_codepoint=0x24F, blacklist_characters="\x7f"),
    max_size=20,
)


@given(LOCALS)
@settings(max_examples=300)
def test_quote_unquote_round_trip(local):
    for q, u in ((A.quote_local_ref, A.unquote_local_ref), (A.quote_local, A.unquote_local)):
        assert u(q(local)) == local


@given(LOCALS)
@settings(max_examples=300)
def test_quoted_splits_back(local):
    addr = A.quote_local(local) + "@example.org"
    assert A.split_addr(addr) == (A.quote_local(local), "example.org")


# ---- address lists


@both("parse_addr_list")
@pytest.mark.parametrize(
    "value, expected",
    [
        ("Ann <a@x.org>, b@y.org (Bob)", ["a@x.org", "b@y.org"]),
        ("team: a@x, b@y;, c@z", ["a@x", "b@y", "c@z"]),
        ('"Smith, J" <j@x>', ["j@x"]),
        ('"a b"@x', ['"a b"@x']),
        ("Undisclosed recipients:;", []),
        ("a@[192.0.2.1]", ["a@[192.0.2.1]"]),
        ("(c) a . b @ x (d)", ["a.b@x"]),
        ("<>", []),
        ("x <a@b>, <c@d>, e", ["a@b", "c@d", "e"]),
        ("=?utf-8?q?J=C3=B6?= <j@x>", ["j@x"]),
        ("a@x,,b@y", ["a@x", "b@y"]),
    ],
)
def test_addr_list_examples(fn, value, expected):
    assert fn(value.encode()) == expected


@both("scan_addr_list")
def test_spans_locate_addresses(fn):
    value = b'Ann <a@x>, "Bo, B" <b@y>, c@z (C)'
    spans = fn(value)
    assert [value[s:e] for s, e, _ in spans] == [b"a@x", b"b@y", b"c@z"]


@both("scan_addr_list")
def test_route_in_angle_dropped(fn):
    assert fn(b"<@r1,@r2:u@d>") == [(1, 12, b"u@d")]


@both("scan_addr_list")
def test_empty_angle_span(fn):
    assert fn(b"x <>") == [(3, 3, b"")]


ATOM = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789+-_", min_size=1, max_size=8)
DOMAIN = st.lists(ATOM, min_size=1, max_size=3).map(".".join)
LOCAL = st.one_of(
    st.lists(ATOM, min_size=1, max_size=3).map(".".join),
    st.text(alphabet="abc xyz,@<>()", min_size=1, max_size=8).map(lambda s: '"' + s + '"'),
)
ADDR = st.builds(lambda lp, d: f"{lp}@{d}", LOCAL, DOMAIN)
NAME = st.one_of(
    st.just(""),
    st.lists(ATOM, min_size=1, max_size=3).map(" ".join),
    st.text(alphabet="abc ,;:<>@().", max_size=8).map(lambda s: '"' + s + '"'),
)
COMMENT = st.one_of(
    st.just(""), st.text(alphabet="abc ,;:<>@", max_size=8).map(lambda s: " (" + s + ")")
)


@st.composite
def mailbox(draw):
    addr = draw(ADDR)
    name = draw(NAME)
    if name or draw(st.booleans()):
        return f"{name} <{addr}>{draw(COMMENT)}".strip(), addr
    return f"{addr}{draw(COMMENT)}", addr


@st.composite
def address_list(draw):
    parts, addrs = [], []
    for _ in range(draw(st.integers(1, 4))):
        if draw(st.integers(0, 4)) == 0:
            members = draw(st.lists(mailbox(), max_size=3))
            parts.append(draw(ATOM) + ": " + ", ".join(m for m, _ in members) + ";")
            addrs += [a for _, a in members]
        else:
            m, a = draw(mailbox())
            parts.append(m)
            addrs.append(a)
    return ", ".join(parts), addrs


@given(address_list())
@settings(max_examples=200)
def test_addr_list_against_generator_and_ref(case):
    value, expected = case
    raw = value.encode()
    assert A.parse_addr_list_ref(raw) == expected
    assert A.parse_addr_list(raw) == expected
    assert A.scan_addr_list(raw) == A.scan_addr_list_ref(raw)


@given(address_list())
@settings(max_examples=200)
def test_addr_list_against_email_package(case):
    value, _ = case
    assert A.parse_addr_list(value.encode()) == addresses(value)


@pytest.mark.skipif(A.scan_addr_list_c is None, reason="extension not built")
@given(st.binary(max_size=120))
@settings(max_examples=250)
def test_c_agrees_with_ref_on_any_bytes(data):
    assert A.scan_addr_list_c(data) == A.scan_addr_list_ref(data)


def outcome(fn, data):
    try:
        return fn(data)
    except A.AddrError as exc:
        return ("error", str(exc))


@pytest.mark.skipif(A.parse_path_c is None, reason="extension not built")
@given(st.binary(max_size=60))
@settings(max_examples=250)
def test_path_c_agrees_with_ref_on_any_bytes(data):
    assert outcome(A.parse_path_c, data) == outcome(A.parse_path_ref, data)


@pytest.mark.skipif(A.parse_path_c is None, reason="extension not built")
@given(st.text(alphabet='<>@",.:[]\\ ab\t', max_size=30))
@settings(max_examples=250)
def test_path_c_agrees_with_ref_on_path_like_text(text):
    data = text.encode()
    assert outcome(A.parse_path_c, data) == outcome(A.parse_path_ref, data)


@pytest.mark.skipif(A.split_addr_c is None, reason="extension not built")
@given(st.text(alphabet='@"\\ab.%!', max_size=20))
@settings(max_examples=300)
def test_text_helpers_agree(text):
    assert A.split_addr_c(text) == A.split_addr_ref(text)
    assert A.quote_local_c(text) == A.quote_local_ref(text)
    assert A.unquote_local_c(text) == A.unquote_local_ref(text)
    assert A.canon_addr_c(text) == A.canon_addr_ref(text)
