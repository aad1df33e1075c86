"""lmdb: tables: build, lookup with folding, null-byte convention, reopen on rebuild, updates."""

import os

import lmdb
import pytest

from mta.maps import MapError, dict_lmdb, open_map, set_note_handler
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


@pytest.mark.parametrize("kind", ["hash", "btree"])
def test_postfix_hash_and_btree_names_read_the_lmdb_file(tmp_path, kind):
    build_lmdb(str(tmp_path / "virtual.lmdb"), [(b"a@example.com", b"b@example.net")])
    table = open_map(f"{kind}:{tmp_path}/virtual")
    assert table.kind == kind and table.spec == f"{kind}:{tmp_path}/virtual"
    assert table.lookup("A@Example.com") == "b@example.net"
    assert list(table.items()) == [("a@example.com", "b@example.net")]


def test_hash_table_notes_once_which_file_serves_it(tmp_path):
    build_lmdb(str(tmp_path / "t.lmdb"), [(b"k", b"v")])
    notes = []
    set_note_handler(notes.append)
    try:
        open_map(f"hash:{tmp_path}/t")
        open_map(f"hash:{tmp_path}/t", fold=False)  # another object, same table: no new note
        open_map(f"btree:{tmp_path}/t")
    finally:
        set_note_handler(None)
    assert notes == [
        f"hash:{tmp_path}/t is served from the LMDB file {tmp_path}/t.lmdb",
        f"btree:{tmp_path}/t is served from the LMDB file {tmp_path}/t.lmdb",
    ]


def test_missing_hash_file_says_which_command_builds_it(tmp_path):
    with pytest.raises(MapError) as err:
        open_map(f"hash:{tmp_path}/virtual")
    assert str(err.value) == (
        f"hash:{tmp_path}/virtual: open database {tmp_path}/virtual.lmdb: No such file or "
        f'directory (hash: tables are read from the LMDB file that "mta map hash:{tmp_path}/virtual" builds)'
    )


def test_hash_in_a_maps_parameter(tmp_path):
    from mta.config import load_config
    from mta.maps import Maps

    build_lmdb(str(tmp_path / "virtual.lmdb"), [(b"a@example.com", b"b@example.net")])
    (tmp_path / "main.cf").write_text(f"virtual_alias_maps = hash:{tmp_path}/virtual\n")
    maps = Maps.from_param(load_config(str(tmp_path)), "virtual_alias_maps")
    assert maps.lookup("a@example.com") == "b@example.net"


def test_one_file_under_several_names_is_opened_once(tmp_path):
    """lmdb:F, hash:F and an unfolded F share one open file (py-lmdb refuses a second open)."""
    build_lmdb(str(tmp_path / "t.lmdb"), [(b"k", b"v")])
    tables = [
        open_map(f"lmdb:{tmp_path}/t"),
        open_map(f"lmdb:{tmp_path}/t", fold=False),
        open_map(f"hash:{tmp_path}/t"),
        open_map(f"btree:{tmp_path}/t"),
    ]
    assert [t.lookup("k") for t in tables] == ["v"] * 4
    tables[0].close()
    assert tables[1].lookup("k") == "v"  # the others keep the file open


def test_update_while_the_table_is_open_in_this_process(tmp_path):
    path = str(tmp_path / "t.lmdb")
    build_lmdb(path, [(b"a", b"1")])
    table = open_map(f"lmdb:{tmp_path}/t")
    assert table.lookup("a") == "1"
    update_lmdb(path, puts=[(b"b", b"2")])
    update_lmdb(path, deletes=[b"a"])
    table._file.current(recheck=True)
    assert (table.lookup("a"), table.lookup("b")) == (None, "2")
