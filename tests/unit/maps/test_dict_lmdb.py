"""lmdb: tables: build, lookup with folding, null-byte convention, reopen on rebuild, updates."""

import os

import lmdb
import pytest

from mta.maps import MapError, dict_lmdb, open_map
from mta.maps.dict_lmdb import build_lmdb, update_lmdb


def test_lookup_folds_the_key(tmp_path):
    build_lmdb(str(tmp_path / "t.lmdb"), [(b"user@example.com", b"x")])
    assert open_map(f"lmdb:{tmp_path}/t").lookup("User@Example.COM") == "x"


def test_missing_file_is_a_map_error_naming_it(tmp_path):
    with pytest.raises(MapError, match=r"lmdb:.*/nope: open database .*/nope\.lmdb"):
        open_map(f"lmdb:{tmp_path}/nope")


def test_keys_are_stored_with_a_null_byte_like_postfix(tmp_path):
    build_lmdb(str(tmp_path / "t.lmdb"), [(b"k", b"v")])
    env = lmdb.open(str(tmp_path / "t.lmdb"), readonly=True, lock=False, subdir=False)
    with env.begin() as txn:
        assert list(txn.cursor()) == [(b"k\0", b"v\0")]
    env.close()


def test_reads_tables_without_null_bytes(tmp_path):
    build_lmdb(str(tmp_path / "t.lmdb"), [(b"k", b"v")], nul=False)
    assert open_map(f"lmdb:{tmp_path}/t").lookup("k") == "v"


def test_duplicates_keep_first_and_warn(tmp_path):
    seen = []
    n = build_lmdb(str(tmp_path / "t.lmdb"), [(b"a", b"1"), (b"a", b"2")], warn=seen.append)
    assert n == 1 and open_map(f"lmdb:{tmp_path}/t").lookup("a") == "1"
    assert seen == [f'{tmp_path}/t.lmdb: duplicate entry: "a"']


def test_duplicates_replace_keeps_last(tmp_path):
    build_lmdb(str(tmp_path / "t.lmdb"), [(b"a", b"1"), (b"a", b"2")], duplicates="replace")
    assert open_map(f"lmdb:{tmp_path}/t").lookup("a") == "2"


def test_growth_path_doubles_map_size(tmp_path):
    pairs = [(b"key%06d" % i, b"v" * 100) for i in range(3000)]
    build_lmdb(str(tmp_path / "t.lmdb"), pairs, map_size=32 * 1024, exact_size=True)
    assert open_map(f"lmdb:{tmp_path}/t").lookup("key002999") == "v" * 100


def test_rebuilt_table_is_reopened(tmp_path, monkeypatch):
    build_lmdb(str(tmp_path / "t.lmdb"), [(b"a", b"old")])
    table = open_map(f"lmdb:{tmp_path}/t")
    assert table.lookup("a") == "old"
    build_lmdb(str(tmp_path / "t.lmdb"), [(b"a", b"new")])
    monkeypatch.setattr(dict_lmdb, "LMDB_RECHECK", 0.0)
    assert table.lookup("a") == "new"


def test_no_temporary_file_is_left_behind(tmp_path):
    build_lmdb(str(tmp_path / "t.lmdb"), [(b"a", b"1")])
    assert sorted(os.listdir(tmp_path)) == ["t.lmdb"]


def test_update_adds_and_deletes_by_copy(tmp_path):
    path = str(tmp_path / "t.lmdb")
    build_lmdb(path, [(b"a", b"1"), (b"b", b"2")])
    before = os.stat(path).st_ino
    removed = update_lmdb(path, puts=[(b"c", b"3")], deletes=[b"a", b"zz"])
    assert removed == [b"a"]
    assert os.stat(path).st_ino != before
    assert dict(open_map(f"lmdb:{tmp_path}/t").items()) == {"b": "2", "c": "3"}


def test_items_lists_everything(tmp_path):
    build_lmdb(str(tmp_path / "t.lmdb"), [(b"b", b"2"), (b"a", b"1")])
    assert list(open_map(f"lmdb:{tmp_path}/t").items()) == [("a", "1"), ("b", "2")]
