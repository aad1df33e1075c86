"""aliases(5) source parsing and alias value splitting."""

from hypothesis import given
from hypothesis import strategies as st

from mta.local.aliases_file import parse_aliases, split_alias_value


def test_continuation_comments_and_quoted_names():
    data = b'# c\nA: x,\n  y\n\n"b c" : z\nbad\nnone:\n'
    pairs, warnings = parse_aliases(data)
    assert pairs == [(b"a", b"x, y"), (b"b c", b"z")]
    assert warnings == [(6, "need name:value pair"), (7, 'no value for alias "none"')]


def test_split_keeps_quoted_commands_whole():
    assert split_alias_value('a, "|prog x, y" ,/f, :include:/l') == [
        "a",
        "|prog x, y",
        "/f",
        ":include:/l",
    ]


names = st.text("abcdefgh-._", min_size=1, max_size=8)
values = st.lists(st.text("abcxyz@.", min_size=1, max_size=8), min_size=1, max_size=4)


@given(st.lists(st.tuples(names, values), max_size=6))
def test_parse_matches_simple_reference(entries):
    text = "".join(f"{n}: {', '.join(v)}\n" for n, v in entries)
    pairs, warnings = parse_aliases(text.encode())
    assert warnings == []
    assert pairs == [(n.encode(), ", ".join(v).encode()) for n, v in entries]
    for (_, value), (_, v) in zip(pairs, entries, strict=True):
        assert split_alias_value(value.decode()) == v
