"""Lookups per second for each table type, against a Python dict in the same run."""

import pytest

from mta.maps import clear_cache, open_map
from mta.maps.dict_lmdb import build_lmdb

N = 1000
KEYS = [f"user{i}@example{i % 10}.com" for i in range(N)]
QUERIES = KEYS[::10] + [f"miss{i}@nowhere.example" for i in range(100)]


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    d = tmp_path_factory.mktemp("bench_maps")
    clear_cache()
    pairs = [(k.encode(), b"ok") for k in KEYS]
    build_lmdb(str(d / "t.lmdb"), pairs)
    (d / "t").write_text("".join(f"{k} ok\n" for k in KEYS))
    (d / "r").write_text(
        "".join(f"/^user{i}@example{i % 10}\\.com$/ ok\n" for i in range(0, N, 50))
        + "/@example[0-9]\\.com$/ ok\n"
    )
    (d / "c").write_text("".join(f"10.{i // 256}.{i % 256}.0/24 ok\n" for i in range(200)))
    inline = "inline:{ " + ", ".join(f"{k}=ok" for k in KEYS[:200]) + " }"
    yield {
        "dict": dict.fromkeys(KEYS, "ok"),
        "lmdb": open_map(f"lmdb:{d}/t"),
        "texthash": open_map(f"texthash:{d}/t"),
        "inline": open_map(inline),
        "static": open_map("static:ok"),
        "regexp": open_map(f"regexp:{d}/r"),
        "pcre": open_map(f"pcre:{d}/r"),
        "cidr": open_map(f"cidr:{d}/c"),
    }
    clear_cache()


def run_lookups(table, queries):
    get = table.get if isinstance(table, dict) else table.lookup
    hits = 0
    for q in queries:
        if get(q) is not None:
            hits += 1
    return hits


@pytest.mark.benchmark(group="map lookups: 200 keys (100 hits, 100 misses)")
@pytest.mark.parametrize(
    "kind", ["dict", "lmdb", "texthash", "inline", "static", "regexp", "pcre", "cidr"]
)
def test_lookups(benchmark, tables, kind):
    queries = (
        [f"10.{i % 200 // 256}.{i % 200}.9" for i in range(200)] if kind == "cidr" else QUERIES
    )
    hits = benchmark(run_lookups, tables[kind], queries)
    assert hits > 0
