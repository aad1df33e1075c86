"""Tables are opened once per process, even when threads ask for the same one at once.

py-lmdb refuses to open one LMDB file twice in a process ("already open in
this process"), so an unlocked cache made two deliveries that started
together in a new local process defer one of them.
"""

import threading

from mta.maps import clear_cache, open_map
from mta.maps.dict_lmdb import build_lmdb
from tests.support.race import race

THREADS = 16  # threads racing for one table
ROUNDS = 40  # fresh caches raced; enough to lose the race reliably before the lock
REBUILDS = 200  # rebuilds of a table while threads read it


def test_threads_opening_one_lmdb_table_share_one_open_table(tmp_path):
    build_lmdb(str(tmp_path / "aliases.lmdb"), [(b"postmaster", b"root")])
    spec = f"lmdb:{tmp_path}/aliases"
    for _ in range(ROUNDS):
        clear_cache()
        tables, errors = race(lambda: open_map(spec), THREADS)
        assert errors == []
        assert len(tables) == THREADS and len({id(t) for t in tables}) == 1
        assert tables[0].lookup("postmaster") == "root"
    clear_cache()


def test_lookups_in_threads_survive_rebuilds(tmp_path, monkeypatch):
    """Threads look up while the table is rebuilt: each sees the old or new table, never fails."""
    monkeypatch.setattr("mta.maps.dict_lmdb.LMDB_RECHECK", 0.0)
    path = str(tmp_path / "t.lmdb")
    build_lmdb(path, [(b"k", b"0")])
    table = open_map(f"lmdb:{tmp_path}/t")
    done = threading.Event()

    def lookups():
        seen = set()
        while not done.is_set():
            seen.add(table.lookup("k"))
        return seen

    def rebuilds():
        try:
            for i in range(1, REBUILDS + 1):
                build_lmdb(path, [(b"k", str(i).encode())])
        finally:
            done.set()
        return {str(REBUILDS)}

    results, errors = race(
        lambda: rebuilds() if threading.current_thread().name == "w0" else lookups(), THREADS
    )
    assert errors == []
    assert set().union(*results) <= {str(i) for i in range(REBUILDS + 1)}
    assert table.lookup("k") == str(REBUILDS)
