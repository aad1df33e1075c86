"""postscreen_dnsbl_sites: parsing, filters, weights, the allowlist and the TTL."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mta.postscreen.dnsbl import DnsblAnswer, parse_dnsbl_site, parse_dnsbl_sites, weigh

README_SITES = [
    "zen.spamhaus.org*3",
    "b.barracudacentral.org*2",
    "bl.spameatingmonkey.net*2",
    "bl.spamcop.net",
    "dnsbl.sorbs.net",
    "psbl.surriel.com",
    "bl.mailspike.net",
    "swl.spamhaus.org*-4",
    "list.dnswl.org=127.0.[0..255].0*-2",
    "list.dnswl.org=127.0.[0..255].1*-3",
    "list.dnswl.org=127.0.[0..255].[2..3]*-4",
]


def test_readme_sites_parse_with_their_weights_and_filters():
    sites = parse_dnsbl_sites(README_SITES)
    assert [(s.domain, s.weight) for s in sites[:4]] == [
        ("zen.spamhaus.org", 3),
        ("b.barracudacentral.org", 2),
        ("bl.spameatingmonkey.net", 2),
        ("bl.spamcop.net", 1),
    ]
    assert sites[-1].domain == "list.dnswl.org" and sites[-1].weight == -4
    assert sites[-1].matches(["127.0.5.3"]) and not sites[-1].matches(["127.0.5.1"])


@pytest.mark.parametrize(
    "bad",
    ["zen.example*x", "=127.0.0.2", "zen.example=127.0.0", "..example", "a.example=1.2.3.[9..2]"],
)
def test_malformed_site_is_an_error(bad):
    with pytest.raises(ValueError):
        parse_dnsbl_site(bad)


def test_weights_add_up_and_the_heaviest_site_is_named():
    sites = parse_dnsbl_sites(["zen.example*3", "bl.example*2", "small.example"])
    answers = {
        "zen.example": DnsblAnswer(["127.0.0.2"], 300),
        "bl.example": DnsblAnswer(["127.0.0.2"], 60),
        "small.example": DnsblAnswer([], None),
    }
    result = weigh(sites, answers)
    assert (result.score, result.site, result.ttl) == (5, "zen.example", 60)


def test_a_filter_decides_which_answers_count():
    sites = parse_dnsbl_sites(["zen.example=127.0.0.[2..11]*3", "zen.example=127.0.0.4*1"])
    assert weigh(sites, {"zen.example": DnsblAnswer(["127.0.0.4"])}).score == 4
    assert weigh(sites, {"zen.example": DnsblAnswer(["127.0.0.12"])}).score == 0
    assert weigh(sites, {"zen.example": DnsblAnswer(["127.0.0.10"])}).score == 3


def test_allowlist_weights_are_negative_and_name_no_site():
    sites = parse_dnsbl_sites(["list.dnswl.org=127.0.[0..255].[0..255]*-2", "zen.example*3"])
    result = weigh(sites, {"list.dnswl.org": DnsblAnswer(["127.0.10.1"])})
    assert (result.score, result.site) == (-2, "")
    both = weigh(
        sites,
        {"list.dnswl.org": DnsblAnswer(["127.0.10.1"]), "zen.example": DnsblAnswer(["127.0.0.2"])},
    )
    assert (both.score, both.site) == (1, "zen.example")


def test_a_domain_that_did_not_answer_counts_as_not_listed():
    sites = parse_dnsbl_sites(["zen.example*3"])
    assert weigh(sites, {}).score == 0


@given(
    labels=st.lists(
        st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True), min_size=2, max_size=4
    ),
    weight=st.one_of(st.none(), st.integers(-100, 100)),
    octets=st.one_of(st.none(), st.lists(st.integers(0, 255), min_size=4, max_size=4)),
)
def test_parse_gives_back_what_was_written(labels, weight, octets):
    domain = ".".join(labels)
    text = domain
    if octets is not None:
        text += "=" + ".".join(map(str, octets))
    if weight is not None:
        text += f"*{weight}"
    site = parse_dnsbl_site(text)
    assert site.domain == domain
    assert site.weight == (1 if weight is None else weight)
    if octets is not None:
        assert site.matches([".".join(map(str, octets))])
        other = [(octets[0] + 1) % 256, *octets[1:]]
        assert not site.matches([".".join(map(str, other))])
    else:
        assert site.matches(["127.0.0.2"]) and not site.matches([])


@given(st.text(max_size=60))
def test_parse_never_fails_other_than_valueerror(text):
    try:
        parse_dnsbl_site(text)
    except ValueError:
        pass
