"""Match lists: domains with and without parent matching, negation, files, tables, networks."""

import pytest

from mta.common.match_list import AddrList, DomainList
from mta.maps import MapError


def test_exact_and_parent_matching():
    lst = DomainList(["example.com"], parent_matches=True)
    assert lst.match("example.com") and lst.match("Mail.Example.COM")
    assert not lst.match("badexample.com")


def test_without_parent_matching_dot_form_matches_subdomains_only():
    lst = DomainList(["example.com", ".example.org"], parent_matches=False)
    assert not lst.match("mail.example.com")
    assert lst.match("mail.example.org") and not lst.match("example.org")


def test_negation_stops_at_first_match():
    lst = DomainList(["!bad.example.com", "example.com"])
    assert not lst.match("bad.example.com") and lst.match("good.example.com")


def test_items_from_file(tmp_path):
    f = tmp_path / "domains"
    f.write_text("# local domains\none.example, two.example\n  three.example\n")
    lst = DomainList(f"{f}", parent_matches=False)
    assert all(lst.match(d) for d in ("one.example", "two.example", "three.example"))
    assert not lst.match("four.example")


def test_negated_file_negates_its_items(tmp_path):
    f = tmp_path / "domains"
    f.write_text("no.example\n")
    lst = DomainList([f"!{f}", "example"])
    assert not lst.match("no.example") and lst.match("yes.example")


def test_table_item_and_parent_lookup():
    lst = DomainList(["inline:{example.com=x}"], parent_matches=True)
    assert lst.match("sub.example.com") and not lst.match("example.net")


def test_addr_list_networks_and_addresses():
    lst = AddrList(["127.0.0.0/8", "[::1]/128", "192.0.2.7", "[2001:db8::1]"])
    assert lst.match("127.1.2.3") and lst.match("::1") and lst.match("192.0.2.7")
    assert lst.match("2001:db8::1") and not lst.match("192.0.2.8")


def test_addr_list_host_names_and_tables():
    lst = AddrList(["!evil.example.com", "example.com", "cidr:{ {10.0.0.0/8 x} }"])
    assert lst.match("203.0.113.1", name="mail.example.com")
    assert not lst.match("203.0.113.1", name="evil.example.com")
    assert lst.match("10.1.1.1") and not lst.match("11.1.1.1")


def test_addr_list_host_bits_are_an_error():
    with pytest.raises(MapError, match="1.2.3.4/24"):
        AddrList(["1.2.3.4/24"])


def test_from_param_uses_parent_domain_matches_subdomains(tmp_path):
    from mta.config import load_config

    (tmp_path / "main.cf").write_text(
        "relay_domains = example.com\nmydestination = example.org\n"
        "parent_domain_matches_subdomains = relay_domains\n"
    )
    cfg = load_config(str(tmp_path))
    assert DomainList.from_param(cfg, "relay_domains").match("sub.example.com")
    assert not DomainList.from_param(cfg, "mydestination").match("sub.example.org")


def test_remembered_client_addresses_match_as_before_and_the_memory_is_bounded(monkeypatch):
    from mta.common import match_list

    monkeypatch.setattr(match_list, "IP_CACHE_SIZE", 3)
    monkeypatch.setattr(match_list, "_IP_CACHE", {})
    lst = AddrList(["10.0.0.0/8", "!192.0.2.1", "192.0.2.0/24", "[2001:db8::]/32"])
    clients = ["10.1.2.3", "192.0.2.1", "192.0.2.7", "2001:db8::5", "[2001:db8::5]", "bogus"]
    for _ in range(3):  # the second and third rounds come from the memory, or after a reset
        assert [lst.match(c) for c in clients] == [True, False, True, True, True, False]
        assert len(match_list._IP_CACHE) <= 3
