"""Egress pools: parsing and every refusal, pool selection, weighted choice, warm-up
caps per day and site, counts in a real LMDB file across reopen and day rollover."""

from __future__ import annotations

import calendar
import random
from collections import Counter

import pytest

from mta.common.egress import EgressConfig, open_egress, setup_problems
from mta.common.egress_counts import WarmupCounts
from mta.common.kv_store import LmdbStore
from mta.config import load_config
from mta.config.errors import ConfigError
from mta.config.validate import config_problems
from tests.support.instance import make_instance

SOURCES = """\
src1    address=127.0.0.2 helo=mail2.example.com
src2    address=127.0.0.3 helo=mail3.example.com
warm    address=127.0.0.4 helo=mail4.example.com warmup=new start=2026-12-01
"""
POOLS = """\
bulk    src1:3, src2:1
newpool warm, src1
solo    warm
"""
SCHEDULES = "new  2, 4, 8\n"


def day_noon(date: str) -> float:
    """The UTC noon of "YYYY-MM-DD" as a time.time() value."""
    y, m, d = (int(x) for x in date.split("-"))
    return float(calendar.timegm((y, m, d, 12, 0, 0)))


DAY1 = day_noon("2026-12-01")
DAY = 86400.0


def make_cfg(tmp_path, sources=SOURCES, pools=POOLS, schedules=SCHEDULES, extra=""):
    tables = tmp_path / "tables"
    tables.mkdir(exist_ok=True)
    (tables / "sources").write_text(sources)
    (tables / "pools").write_text(pools)
    (tables / "schedules").write_text(schedules)
    main_cf = (
        f"egress_sources = texthash:{tables}/sources\n"
        f"egress_pools = texthash:{tables}/pools\n"
        f"egress_warmup_schedules = texthash:{tables}/schedules\n" + extra
    )
    return load_config(str(make_instance(tmp_path, main_cf)))


def refusal(tmp_path, **kw) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        EgressConfig.from_config(make_cfg(tmp_path, **kw))
    return info.value


# ---------------------------------------------------------------- parsing


def test_nothing_configured_means_no_egress(tmp_path):
    cfg = load_config(str(make_instance(tmp_path)))
    assert open_egress(cfg) is None
    assert EgressConfig.from_config(cfg).pool_for("a@example.com", "x") == ""
    assert setup_problems(cfg) == []


def test_parses_sources_pools_and_schedules(tmp_path):
    config = EgressConfig.from_config(make_cfg(tmp_path))
    src1 = config.sources["src1"]
    assert (src1.address, src1.helo, src1.schedule, src1.start) == (
        "127.0.0.2",
        "mail2.example.com",
        (),
        None,
    )
    assert config.sources["warm"].schedule == (2, 4, 8)
    assert str(config.sources["warm"].start) == "2026-12-01"
    bulk = config.pools["bulk"]
    assert [s.name for s in bulk.sources] == ["src1", "src2"]
    assert bulk.weights == (3, 1)
    assert config.pools["newpool"].weights == (1, 1)  # weight 1 when left out
    assert config.header == "X-Pool"


@pytest.mark.parametrize(
    "kw, param, text",
    [
        ({"pools": "bulk  src1, nosuch:2\n"}, "egress_pools", "bulk: no source named 'nosuch'"),
        ({"pools": "bulk  src1:0\n"}, "egress_pools", "bulk: src1:0: a weight"),
        ({"pools": "bulk  src1:x\n"}, "egress_pools", "bulk: src1:x: a weight"),
        ({"pools": "bulk  src1, src1:2\n"}, "egress_pools", "listed twice"),
        ({"pools": "Bad/Name  src1\n"}, "egress_pools", "a name is 1 to 64"),
        (
            {"sources": "s  address=mail.example.com\n", "pools": ""},
            "egress_sources",
            "s: address 'mail.example.com' is not an IP address",
        ),
        (
            {"sources": "s  address=192.0.2.77\n", "pools": ""},
            "egress_sources",
            "s: address 192.0.2.77 is not configured on this host",
        ),
        ({"sources": "s  helo=x.example\n", "pools": ""}, "egress_sources", "s: no address="),
        (
            {"sources": "s  address=127.0.0.2 colour=red\n", "pools": ""},
            "egress_sources",
            "s: unknown option 'colour'",
        ),
        (
            {"sources": "s  address=127.0.0.2 warmup=new\n", "pools": ""},
            "egress_sources",
            "warmup= and start= go together",
        ),
        (
            {"sources": "s  address=127.0.0.2 warmup=new start=2026-13-01\n", "pools": ""},
            "egress_sources",
            "start=2026-13-01: expected a date",
        ),
        (
            {"sources": "s  address=127.0.0.2 warmup=new start=20261201\n", "pools": ""},
            "egress_sources",
            "expected a date",
        ),
        (
            {"sources": "s  address=127.0.0.2 warmup=old start=2026-12-01\n", "pools": ""},
            "egress_sources",
            "no schedule named 'old'",
        ),
        ({"schedules": "new  50, -1\n"}, "egress_warmup_schedules", "new: a daily cap"),
        ({"schedules": "new  50, 0\n"}, "egress_warmup_schedules", "new: a daily cap"),
        ({"schedules": "new  lots\n"}, "egress_warmup_schedules", "new: a daily cap"),
        ({"extra": "egress_default_pool = nosuch\n"}, "egress_default_pool", "no pool named"),
        ({"extra": "egress_pool_header = X Pool:\n"}, "egress_pool_header", "not a header name"),
    ],
)
def test_refuses_bad_entries(tmp_path, kw, param, text):
    exc = refusal(tmp_path, **kw)
    assert exc.param == param
    assert text in exc.message


def test_refuses_a_table_that_cannot_be_listed(tmp_path):
    exc = refusal(tmp_path, extra=f"egress_pools = regexp:{tmp_path}/tables/pools.re\n")
    assert exc.param == "egress_pools"


def test_setup_problems_lists_every_problem_and_warns_of_unknown_pools(tmp_path):
    (tmp_path / "pm").write_text("@shop.example  nosuch\n")
    cfg = make_cfg(
        tmp_path,
        sources=SOURCES + "far  address=192.0.2.77\n",
        pools=POOLS + "broken  src1:0\n",
        extra=f"egress_pool_maps = texthash:{tmp_path}/pm\n",
    )
    found = setup_problems(cfg)
    assert ("egress_sources", "far: address 192.0.2.77 is not configured on this host", True) in (
        found
    )
    assert any(p == "egress_pools" and "broken" in why and fatal for p, why, fatal in found)
    assert ("egress_pool_maps", "names pool 'nosuch', not in egress_pools", False) in found


def test_mta_check_reports_a_non_local_address_as_fatal(tmp_path):
    cfg = make_cfg(tmp_path, sources="far  address=192.0.2.77\n", pools="")
    found = [p for p in config_problems(cfg) if "192.0.2.77" in str(p)]
    assert len(found) == 1 and found[0].fatal
    assert "parameter egress_sources: far:" in str(found[0])


# ---------------------------------------------------------------- pool_for


def test_pool_for_header_then_table_then_default(tmp_path):
    (tmp_path / "pm").write_text("news@shop.example  newpool\n@shop.example  solo\n")
    cfg = make_cfg(
        tmp_path,
        extra=f"egress_pool_maps = texthash:{tmp_path}/pm\negress_default_pool = bulk\n"
        "recipient_delimiter = +\n",
    )
    config = EgressConfig.from_config(cfg)
    assert config.pool_for("news@shop.example", "solo") == "solo"  # the header wins
    assert config.pool_for("news+list7@shop.example", "") == "newpool"  # user+ext -> user
    assert config.pool_for("news@shop.example", "unknown") == "newpool"  # unknown header pool
    assert config.pool_for("other@shop.example", "") == "solo"  # @domain
    assert config.pool_for("a@elsewhere.example", "") == "bulk"  # the default
    assert config.pool_for("", "") == "bulk"  # the null sender


def test_pool_for_without_default_is_none(tmp_path):
    config = EgressConfig.from_config(make_cfg(tmp_path))
    assert config.pool_for("a@elsewhere.example", "") == ""


# ---------------------------------------------------------------- choose


def test_choice_follows_the_weights(tmp_path):
    egress = open_egress(make_cfg(tmp_path), rng=random.Random(7))
    picks = Counter(egress.choose("bulk", "gmail", DAY1).name for _ in range(8000))
    assert set(picks) == {"src1", "src2"}
    assert 0.72 < picks["src1"] / 8000 < 0.78  # weight 3 of 4


def test_chosen_source_has_address_and_helo(tmp_path):
    egress = open_egress(make_cfg(tmp_path), rng=random.Random(1))
    src = egress.choose("solo", "gmail", DAY1)
    assert (src.name, src.address, src.helo) == ("warm", "127.0.0.4", "mail4.example.com")


def test_unknown_pool_is_a_key_error(tmp_path):
    egress = open_egress(make_cfg(tmp_path))
    with pytest.raises(KeyError):
        egress.choose("nosuch", "gmail", DAY1)


def test_cap_holds_per_site_and_grows_per_day(tmp_path):
    egress = open_egress(make_cfg(tmp_path))
    assert egress.remaining("warm", "gmail", DAY1) == 2
    egress.count("warm", "gmail", 2, DAY1)
    assert egress.choose("solo", "gmail", DAY1) is None  # day 1: cap 2 reached
    assert egress.choose("solo", "yahoo", DAY1).name == "warm"  # another site: its own cap
    assert egress.remaining("warm", "gmail", DAY1) == 0
    day2 = DAY1 + DAY
    assert egress.remaining("warm", "gmail", day2) == 4
    egress.count("warm", "gmail", 4, day2)
    assert egress.choose("solo", "gmail", day2) is None
    assert egress.remaining("warm", "gmail", DAY1 + 3 * DAY) is None  # after the last day
    assert egress.choose("solo", "gmail", DAY1 + 3 * DAY).name == "warm"


def test_capped_source_leaves_the_others(tmp_path):
    egress = open_egress(make_cfg(tmp_path), rng=random.Random(3))
    egress.count("warm", "gmail", 2, DAY1)
    assert {egress.choose("newpool", "gmail", DAY1).name for _ in range(50)} == {"src1"}
    assert {egress.choose("newpool", "other", DAY1).name for _ in range(50)} == {"src1", "warm"}


def test_not_started_source_sends_nothing(tmp_path):
    egress = open_egress(make_cfg(tmp_path))
    assert egress.remaining("warm", "gmail", DAY1 - DAY) == 0
    assert egress.choose("solo", "gmail", DAY1 - DAY) is None


# ---------------------------------------------------------------- counts


def test_counts_survive_a_reopen(tmp_path):
    cfg = make_cfg(tmp_path)
    egress = open_egress(cfg)
    egress.count("warm", "gmail", 1, DAY1)
    egress.close()
    assert (tmp_path / "data" / "egress_state.lmdb").exists()
    again = open_egress(cfg)
    assert again.remaining("warm", "gmail", DAY1) == 1
    again.count("warm", "gmail", 1, DAY1)
    again.close()
    assert open_egress(cfg).choose("solo", "gmail", DAY1) is None


def test_counts_are_written_through_without_close(tmp_path):
    path = str(tmp_path / "state.lmdb")
    counts = WarmupCounts(LmdbStore(path, 1 << 20), flush_interval=3600, flush_counts=5)
    counts.add("2026-12-01", "src1", "gmail", 4)
    reader = counts.store  # one LMDB environment per file and process
    assert reader.get("2026-12-01\tsrc1\tgmail") is None  # held in memory
    counts.add("2026-12-01", "src1", "gmail", 1)  # the fifth count: written
    assert reader.get("2026-12-01\tsrc1\tgmail") == "5"


def test_day_rollover_starts_at_zero_and_prunes_old_days(tmp_path):
    store = LmdbStore(str(tmp_path / "state.lmdb"), 1 << 20)
    store.put("2026-11-01\tsrc1\tgmail", "99")  # a month old
    counts = WarmupCounts(store, keep_days=7)
    counts.add("2026-12-01", "src1", "gmail", 3)
    assert counts.get("2026-12-01", "src1", "gmail") == 3
    assert store.get("2026-11-01\tsrc1\tgmail") is None  # pruned at the first day
    counts.add("2026-12-02", "src1", "gmail", 1)
    assert counts.get("2026-12-02", "src1", "gmail") == 1
    assert store.get("2026-12-01\tsrc1\tgmail") == "3"  # the old day flushed at rollover
    counts.add("2026-12-01", "src1", "gmail", 2)  # a late count for yesterday
    assert counts.get("2026-12-01", "src1", "gmail") == 5
    assert counts.get("2026-12-02", "src1", "gmail") == 1


def test_a_broken_entry_is_reported_once_not_by_what_names_it(tmp_path):
    (tmp_path / "pm").write_text("@shop.example  newpool\n")
    cfg = make_cfg(
        tmp_path,
        sources=SOURCES.replace("127.0.0.4", "192.0.2.77"),
        schedules="new  2, x\n",
        extra=f"egress_pool_maps = texthash:{tmp_path}/pm\negress_default_pool = solo\n",
    )
    found = setup_problems(cfg)
    assert [(p, why.partition(":")[0]) for p, why, _ in found] == [
        ("egress_warmup_schedules", "new")
    ]
