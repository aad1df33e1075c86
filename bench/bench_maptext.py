"""maptext: reference vs compiled parser on a 100k-line table source."""

import pytest

from mta.maps import text

SOURCE = b"".join(
    b"User%d@Example%d.com\tsmtp:[relay%d.example.net]:25\n" % (i, i % 97, i % 7)
    + (b"  continued value\n" if i % 50 == 0 else b"")
    + (b"# comment\n" if i % 100 == 0 else b"")
    for i in range(100_000)
)
IMPLS = {"ref": text.parse_table_text_ref, "c": text.parse_table_text_c}


@pytest.mark.benchmark(group="parse_table_text: 100k lines")
@pytest.mark.parametrize("impl", [name for name, fn in IMPLS.items() if fn])
def test_parse_100k_lines(benchmark, impl):
    pairs, warnings = benchmark(IMPLS[impl], SOURCE, True)
    assert len(pairs) == 100_000 and not warnings
