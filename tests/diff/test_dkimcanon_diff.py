"""DKIM canonicalization kernels: compiled and reference agree, and both agree with dkimpy."""

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mta.common import dkim_canon as K

dkim_canon_lib = pytest.importorskip("dkim.canonicalization")

BODIES = [pytest.param(K.BodyCanon_ref, id="ref")]
RELAXED = [pytest.param(K.header_relaxed_ref, id="ref")]
if K.BodyCanon_c is not None:
    BODIES.append(pytest.param(K.BodyCanon_c, id="c"))
    RELAXED.append(pytest.param(K.header_relaxed_c, id="c"))

# a line as the queue file keeps it: no LF; CR only inside (a trailing one
# would read as part of a CRLF line end on the wire)
LINE = st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"").rstrip(b"\r"))
WS_HEAVY = st.lists(st.sampled_from([b" ", b"\t", b"a", b"b", b"\xff", b"\r"]), max_size=30).map(
    b"".join
)
BODY_LINES = st.lists(st.one_of(LINE, WS_HEAVY.map(lambda b: b.rstrip(b"\r"))), max_size=12)


def test_extension_loaded():
    if os.environ.get("MTA_NO_EXTENSIONS"):
        pytest.skip("pure build")
    assert K.BodyCanon is K.BodyCanon_c
    assert K.header_relaxed is K.header_relaxed_c


def canon_body(cls, lines, relaxed):
    canon = cls(relaxed)
    return b"".join(canon.line(line) for line in lines) + canon.finish()


@pytest.mark.parametrize("cls", BODIES)
def test_body_examples(cls):
    lines = [b" a  b \t", b"", b"  ", b"c", b"", b""]
    assert canon_body(cls, lines, True) == b" a b\r\n\r\n\r\nc\r\n"
    assert canon_body(cls, lines, False) == b" a  b \t\r\n\r\n  \r\nc\r\n"
    assert canon_body(cls, [], True) == b""  # relaxed: an empty body is empty
    assert canon_body(cls, [b"", b" "], True) == b""
    assert canon_body(cls, [], False) == b"\r\n"  # simple: an empty body is one CRLF
    assert canon_body(cls, [b"", b""], False) == b"\r\n"


@pytest.mark.parametrize("fn", RELAXED)
def test_header_relaxed_examples(fn):
    assert fn(b"Subject", b" Hello\r\n\tworld  ") == b"subject:Hello world\r\n"
    assert fn(b"X-Thing ", b"\tfolded\n  as LF") == b"x-thing:folded as LF\r\n"
    assert fn(b"A", b"x\ry") == b"a:x\ry\r\n"  # a CR alone is content
    assert fn(b"A", b"") == b"a:\r\n"
    assert fn(b"A", b" \r\n ") == b"a:\r\n"


@settings(max_examples=300, deadline=None)
@given(BODY_LINES, st.booleans())
def test_body_compiled_matches_reference(lines, relaxed):
    expected = canon_body(K.BodyCanon_ref, lines, relaxed)
    for param in BODIES:
        assert canon_body(param.values[0], lines, relaxed) == expected


@settings(max_examples=300, deadline=None)
@given(BODY_LINES, st.booleans())
def test_body_matches_dkimpy(lines, relaxed):
    wire = b"".join(line + b"\r\n" for line in lines)
    oracle = dkim_canon_lib.Relaxed if relaxed else dkim_canon_lib.Simple
    assert canon_body(K.BodyCanon, lines, relaxed) == oracle.canonicalize_body(wire)


NAME = st.binary(min_size=1, max_size=12).map(
    lambda b: bytes(c for c in b if 33 <= c <= 126 and c != 58) or b"X"
)
VALUE = st.lists(
    st.sampled_from([b" ", b"\t", b"\r\n ", b"\r\n\t", b"v", b"W", b"\xc3\xa9", b";"]), max_size=20
).map(b"".join)


@settings(max_examples=300, deadline=None)
@given(NAME, VALUE)
def test_header_compiled_matches_reference_and_dkimpy(name, value):
    expected = K.header_relaxed_ref(name, value)
    for param in RELAXED:
        assert param.values[0](name, value) == expected
    [(oname, ovalue)] = dkim_canon_lib.Relaxed.canonicalize_headers([(name, value)])
    assert expected == oname + b":" + ovalue


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=60), st.binary(max_size=60))
def test_header_compiled_matches_reference_on_any_bytes(name, value):
    expected = K.header_relaxed_ref(name, value)
    for param in RELAXED:
        assert param.values[0](name, value) == expected
