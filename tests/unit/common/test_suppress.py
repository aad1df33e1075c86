"""The suppression list in a real LMDB file: scopes, expiry, what a bounce teaches,
import/export forms, and bad settings."""

import json

import pytest

from mta.common.suppress import Entry, open_suppression, parse_lifetimes
from mta.config import load_config
from mta.config.errors import ConfigError
from tests.support.instance import make_instance

DAY = 86400.0


def make_list(tmp_path, extra: str = ""):
    cfg = load_config(
        str(
            make_instance(tmp_path, f"suppression_map = lmdb:{tmp_path}/data/suppression\n" + extra)
        )
    )
    return open_suppression(cfg)


def test_no_map_no_list(tmp_path):
    cfg = load_config(str(make_instance(tmp_path)))
    assert open_suppression(cfg) is None


def test_global_and_sender_domain_scopes(tmp_path):
    sl = make_list(tmp_path)
    sl.add("Ann@Example.COM", klass="invalid_mailbox")
    sl.add("bob@example.net", scope="shop.example")
    assert (tmp_path / "data" / "suppression.lmdb").exists()
    assert sl.check("ann@example.com", "x@any.example").klass == "invalid_mailbox"
    assert sl.check("<ANN@example.com>", "") is not None
    assert sl.check("bob@example.net", "news@shop.example") is not None
    assert sl.check("bob@example.net", "news@mail.shop.example") is not None  # subdomain
    assert sl.check("bob@example.net", "news@other.example") is None
    assert sl.check("bob@example.net", "") is None
    assert [e.scope for e in sl.of_address("bob@example.net")] == ["shop.example"]


def test_expired_entry_does_not_suppress(tmp_path):
    sl = make_list(tmp_path)
    sl.add("old@example.com", expires=1000.0, now=500.0)
    assert sl.check("old@example.com", now=999.0) is not None
    assert sl.check("old@example.com", now=1000.0) is None


def test_remove(tmp_path):
    sl = make_list(tmp_path)
    sl.add("a@example.com")
    assert sl.remove("A@example.com") is True
    assert sl.remove("a@example.com") is False
    assert sl.check("a@example.com") is None


def test_learn_only_hard_failures_of_listed_classes(tmp_path):
    sl = make_list(tmp_path)
    now = 10 * DAY
    assert sl.learn(
        "a@x.example", "invalid_mailbox", "5.1.1", "550 no", "s@shop.example", "Q1", now=now
    )
    e = sl.check("a@x.example", now=now)
    assert (e.klass, e.source, e.queue_id, e.expires) == (
        "invalid_mailbox",
        "bounce",
        "Q1",
        now + 400 * DAY,
    )
    # a temporary failure never suppresses, whatever its class
    assert (
        sl.learn("b@x.example", "invalid_mailbox", "4.1.1", "450", "s@shop.example", "Q2") is None
    )
    # a class not in suppression_classes does not
    assert sl.learn("c@x.example", "mailbox_full", "5.2.2", "552", "s@shop.example", "Q3") is None
    assert sl.learn("d@x.example", "spam_block", "5.7.1", "554", "s@shop.example", "Q4") is None
    # a complaint does, and never expires (complaint:0)
    e = sl.learn("e@x.example", "complaint", "", "abuse report", "s@shop.example", "Q5", "feedback")
    assert e.expires == 0 and e.source == "feedback"
    # domain_not_found lasts 30 days: it does not shorten a longer entry
    assert (
        sl.learn("a@x.example", "domain_not_found", "5.1.2", "nx", "s@shop.example", "Q6", now=now)
        is None
    )
    assert sl.check("a@x.example", now=now).klass == "invalid_mailbox"


def test_learn_per_sender_domain(tmp_path):
    sl = make_list(tmp_path, "suppression_scope = sender_domain\n")
    sl.learn("a@x.example", "invalid_mailbox", "5.1.1", "550", "news@Shop.Example", "Q1")
    assert sl.check("a@x.example", "news@shop.example") is not None
    assert sl.check("a@x.example", "news@other.example") is None


def test_entry_json_round_trip_and_refusals():
    e = Entry("a@x.example", "shop.example", "invalid_mailbox", "550", 5.0, 0.0, "bounce", "Q")
    data = e.as_json()
    assert data["class"] == "invalid_mailbox" and data["scope"] == "shop.example"
    assert Entry.from_json(json.loads(json.dumps(data))) == e
    with pytest.raises(ValueError):
        Entry.from_json({"address": "a@x.example", "class": "nonsense"})
    with pytest.raises(ValueError):
        Entry.from_json({"address": "two words"})
    with pytest.raises(ValueError):
        Entry.from_json(["not", "an", "object"])


def test_bad_settings(tmp_path):
    cfg = load_config(
        str(make_instance(tmp_path, "suppression_classes = invalid_mailbox:400d, bogus:1d\n"))
    )
    with pytest.raises(ConfigError, match="bogus"):
        parse_lifetimes(cfg)
    cfg = load_config(str(make_instance(tmp_path, "suppression_map = regexp:/x\n")))
    with pytest.raises(ConfigError, match="lmdb"):
        open_suppression(cfg)
