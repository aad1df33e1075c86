"""The postscreen cache: the value format, due tests, and a real LMDB file."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mta.common.kv_store import LmdbStore
from mta.postscreen.cache import (
    PSC_DNSBL,
    PSC_PIPEL,
    PSC_PREGREET,
    TEST_NAMES,
    PscCache,
    decode_stamps,
    due_tests,
    encode_stamps,
)

ALL_ON = (True,) * len(TEST_NAMES)


@given(st.lists(st.integers(0, 2**39), min_size=len(TEST_NAMES), max_size=len(TEST_NAMES)))
def test_stamps_round_trip(stamps):
    assert decode_stamps(encode_stamps(stamps)) == stamps


@given(st.text(max_size=80))
def test_any_value_decodes_to_stamps_or_a_new_client(text):
    stamps = decode_stamps(text)
    assert len(stamps) == len(TEST_NAMES) and all(s >= 0 for s in stamps)


def test_malformed_values_are_a_new_client():
    for text in (None, "", "1;2;3", "a;b;c;d;e", "1;2;3;4;-5", "9" * 20 + ";1;1;1;1"):
        assert decode_stamps(text) == [0] * len(TEST_NAMES)


def test_due_tests_are_the_enabled_ones_that_expired():
    now = 1000
    stamps = [2000, 500, 0, 3000, 3000]
    assert due_tests(stamps, ALL_ON, now) == {PSC_DNSBL, PSC_PIPEL}
    enabled = (True, False, False, True, True)
    assert due_tests(stamps, enabled, now) == set()
    assert due_tests([0] * 5, enabled, now) == {PSC_PREGREET, 3, 4}


def test_cache_in_lmdb_keeps_entries_across_opens_and_cleans_up(tmp_path):
    path = str(tmp_path / "postscreen_cache.lmdb")
    cache = PscCache(LmdbStore(path, 1 << 20), retention=7 * 86400)
    cache.put("192.0.2.1", [5000, 5000, 5000, 5000, 5000])
    cache.put("192.0.2.2", [10**9, 0, 0, 0, 0])
    cache.store.close()
    cache = PscCache(LmdbStore(path, 1 << 20), retention=100)
    assert cache.get("192.0.2.1") == [5000] * 5
    assert cache.get("192.0.2.9") == [0] * 5
    # 192.0.2.1 expired at 5000: kept until 5100, gone at 5101
    assert cache.cleanup(5100) == 0
    assert cache.cleanup(5101) == 1
    assert cache.get("192.0.2.1") == [0] * 5
    assert cache.get("192.0.2.2")[0] == 10**9
