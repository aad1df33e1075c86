"""verify cache: entry format, expiry and refresh, probe dedup, negative caching,
and the LMDB store against a real file."""

import pytest
from hypothesis import given
from hypothesis import strategies as hs

from mta.config import load_config
from mta.verify.cache import (
    PROBE_TTL,
    STATUS_BOUNCE,
    STATUS_DEFER,
    STATUS_OK,
    STATUS_TODO,
    TEXT_IN_PROGRESS,
    Entry,
    LmdbStore,
    MemoryStore,
    Policy,
    StoreError,
    VerifyCache,
    open_store,
)

DAY = 86400
POLICY = Policy(
    positive_expire=31 * DAY,
    positive_refresh=7 * DAY,
    negative_expire=3 * DAY,
    negative_refresh=3 * 3600,
)
T0 = 1_800_000_000


@pytest.fixture
def cache():
    return VerifyCache(MemoryStore(), POLICY)


def test_unknown_address_is_in_progress_and_sends_one_probe(cache):
    assert cache.query("a@x.example", T0) == (STATUS_TODO, TEXT_IN_PROGRESS, True)
    # polls while the probe is out do not send another
    assert cache.query("a@x.example", T0 + 3) == (STATUS_TODO, TEXT_IN_PROGRESS, False)
    assert cache.query("A@X.EXAMPLE", T0 + 6)[2] is False  # keys are folded
    # a probe that never came back is sent again after PROBE_TTL
    assert cache.query("a@x.example", T0 + PROBE_TTL + 1)[2] is True


def test_result_is_answered_from_cache_until_refresh(cache):
    cache.query("a@x.example", T0)
    assert cache.update("a@x.example", STATUS_OK, "250 2.1.5 Ok", T0 + 1)
    assert cache.query("a@x.example", T0 + DAY) == (STATUS_OK, "250 2.1.5 Ok", False)
    # stale: the old answer stands while a background probe goes out, once
    assert cache.query("a@x.example", T0 + 8 * DAY) == (STATUS_OK, "250 2.1.5 Ok", True)
    assert cache.query("a@x.example", T0 + 8 * DAY + 5)[2] is False


def test_expired_results_are_forgotten(cache):
    cache.update("ok@x.example", STATUS_OK, "fine", T0)
    cache.update("bad@x.example", STATUS_BOUNCE, "550 no", T0)
    assert cache.query("bad@x.example", T0 + 2 * DAY)[:2] == (STATUS_BOUNCE, "550 no")
    assert cache.query("bad@x.example", T0 + 4 * DAY)[:2] == (STATUS_TODO, TEXT_IN_PROGRESS)
    assert cache.query("ok@x.example", T0 + 30 * DAY)[0] == STATUS_OK
    assert cache.query("ok@x.example", T0 + 32 * DAY)[0] == STATUS_TODO


def test_negative_results_refresh_sooner(cache):
    cache.update("bad@x.example", STATUS_BOUNCE, "550 no", T0)
    assert cache.query("bad@x.example", T0 + 3600)[2] is False
    assert cache.query("bad@x.example", T0 + 4 * 3600) == (STATUS_BOUNCE, "550 no", True)


def test_temporary_failure_does_not_replace_a_good_result(cache):
    cache.update("a@x.example", STATUS_OK, "250 ok", T0)
    cache.query("a@x.example", T0 + 8 * DAY)  # refresh probe out
    assert not cache.update("a@x.example", STATUS_DEFER, "timeout", T0 + 8 * DAY + 1)
    entry = cache.get("a@x.example")
    assert (entry.status, entry.text, entry.probed) == (STATUS_OK, "250 ok", 0)
    # a bounce does replace it
    assert cache.update("a@x.example", STATUS_BOUNCE, "550 gone", T0 + 8 * DAY + 2)
    assert cache.get("a@x.example").status == STATUS_BOUNCE


def test_negative_cache_off_keeps_no_failures():
    cache = VerifyCache(MemoryStore(), Policy(**{**POLICY.__dict__, "negative_cache": False}))
    cache.query("bad@x.example", T0)
    assert not cache.update("bad@x.example", STATUS_BOUNCE, "550 no", T0 + 1)
    assert cache.get("bad@x.example") is None
    assert cache.update("ok@x.example", STATUS_OK, "fine", T0)


def test_update_rejects_a_status_that_is_no_result(cache):
    with pytest.raises(ValueError):
        cache.update("a@x.example", STATUS_TODO, "", T0)


def test_result_text_is_one_bounded_line(cache):
    cache.update("a@x.example", STATUS_BOUNCE, "550 no\r\n  such\tuser " + "x" * 5000, T0)
    text = cache.get("a@x.example").text
    assert text.startswith("550 no such user ")
    assert len(text) == 1000 and "\n" not in text


def test_damaged_entries_read_as_unknown_and_are_cleaned(cache):
    cache.store.put("a@x.example", "garbage")
    cache.store.put("b@x.example", "9:0:0:bad status")
    assert cache.query("a@x.example", T0)[0] == STATUS_TODO
    cache.update("ok@x.example", STATUS_OK, "fine", T0)
    cache.update("old@x.example", STATUS_OK, "fine", T0 - 40 * DAY)
    assert cache.cleanup(T0) == 2  # b (damaged) and old (expired); a has a probe out
    assert {k for k, _ in cache.store.items()} == {"a@x.example", "ok@x.example"}


@given(
    hs.sampled_from([STATUS_OK, STATUS_DEFER, STATUS_TODO, STATUS_BOUNCE]),
    hs.integers(0, 2**40),
    hs.integers(0, 2**40),
    hs.text(),
)
def test_entry_round_trips(status, probed, updated, text):
    entry = Entry(status, probed, updated, text)
    assert Entry.decode(entry.encode()) == entry


def test_lmdb_store_persists_across_opens(tmp_path):
    path = str(tmp_path / "data" / "verify_cache.lmdb")
    cache = VerifyCache(LmdbStore(path, 1 << 16), POLICY)
    cache.update("a@x.example", STATUS_OK, "250 ok", T0)
    for i in range(2000):  # more than the first map size holds: it grows
        cache.update(f"user{i}@x.example", STATUS_BOUNCE, "550 " + "n" * 100, T0)
    cache.store.close()
    again = VerifyCache(LmdbStore(path, 1 << 16), POLICY)
    assert again.query("a@x.example", T0 + 1) == (STATUS_OK, "250 ok", False)
    assert again.get("user1999@x.example").status == STATUS_BOUNCE
    # cleanup: the 2,000 bounces expire after 3 days, the good address after 31
    assert again.cleanup(T0 + 4 * DAY) == 2000
    assert [k for k, _ in again.store.items()] == ["a@x.example"]


def test_open_store_by_parameter(tmp_path):
    (tmp_path / "main.cf").write_text(f"data_directory = {tmp_path}/d\n")
    store = open_store(load_config(str(tmp_path)))
    assert isinstance(store, LmdbStore) and store.path == f"{tmp_path}/d/verify_cache.lmdb"
    store.close()
    (tmp_path / "main.cf").write_text("address_verify_map =\n")
    assert isinstance(open_store(load_config(str(tmp_path))), MemoryStore)
    (tmp_path / "main.cf").write_text("address_verify_map = texthash:/var/lib/x\n")
    with pytest.raises(StoreError, match="address_verify_map: unsupported table"):
        open_store(load_config(str(tmp_path)))


def test_open_store_serves_postfix_btree_name_from_the_lmdb_file(tmp_path):
    (tmp_path / "main.cf").write_text(f"address_verify_map = btree:{tmp_path}/verify_cache\n")
    store = open_store(load_config(str(tmp_path)))
    assert isinstance(store, LmdbStore) and store.path == f"{tmp_path}/verify_cache.lmdb"
    store.close()


def test_an_entry_deleted_with_mta_map_is_probed_again(tmp_path, monkeypatch):
    import subprocess
    import sys

    import mta.common.kv_store as cache_mod

    def mta_map(*args):
        cmd = [sys.executable, "-m", "mta", "map", "-c", str(tmp_path), *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30)

    (tmp_path / "main.cf").write_text("")
    monkeypatch.setattr(cache_mod, "LMDB_RECHECK", 0.0)
    table = f"lmdb:{tmp_path / 'verify_cache'}"
    cache = VerifyCache(LmdbStore(str(tmp_path / "verify_cache.lmdb"), 1 << 20), POLICY)
    cache.update("gone@x.example", STATUS_BOUNCE, "550 no", T0)
    cache.update("kept@x.example", STATUS_OK, "250 ok", T0)
    assert mta_map("-q", "kept@x.example", table).stdout.strip() == f"0:0:{T0}:250 ok"
    # the administrator deletes one entry; like postmap -d, that writes a new file
    assert mta_map("-d", "gone@x.example", table).returncode == 0
    assert cache.query("gone@x.example", T0 + 1) == (STATUS_TODO, TEXT_IN_PROGRESS, True)
    assert cache.query("kept@x.example", T0 + 1)[:2] == (STATUS_OK, "250 ok")
    # what the service writes after that lands in the file others read
    cache.update("new@x.example", STATUS_OK, "250 fine", T0 + 2)
    assert mta_map("-q", "new@x.example", table).stdout.strip() == f"0:0:{T0 + 2}:250 fine"
