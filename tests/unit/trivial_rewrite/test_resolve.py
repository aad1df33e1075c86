"""Resolution to address class, transport, next hop and recipient."""

from mta.trivial_rewrite.resolve import Resolver
from mta.trivial_rewrite.transport import split_transport

CLASSES = (
    "relay_domains = relay.example\n"
    "virtual_alias_domains = alias.example\n"
    "virtual_mailbox_domains = mbox.example\n"
)


def test_mydestination_is_local(make_cfg):
    r = Resolver(make_cfg()).resolve("joe@mx.example.com")
    assert (r.addr_class, r.transport, r.nexthop, r.recipient) == (
        "local",
        "local",
        "mx.example.com",
        "joe@mx.example.com",
    )


def test_localhost_is_local(make_cfg):
    assert Resolver(make_cfg()).resolve("joe@localhost").addr_class == "local"


def test_no_domain_is_local_at_myhostname(make_cfg):
    r = Resolver(make_cfg()).resolve("joe")
    assert (r.addr_class, r.recipient) == ("local", "joe@mx.example.com")


def test_own_address_literal_is_local(make_cfg):
    assert Resolver(make_cfg()).resolve("joe@[127.0.0.1]").addr_class == "local"


def test_foreign_address_literal_is_default(make_cfg):
    assert Resolver(make_cfg()).resolve("joe@[192.0.2.1]").addr_class == "default"


def test_numeric_domain_only_when_enabled(make_cfg):
    assert Resolver(make_cfg()).resolve("joe@127.0.0.1").addr_class == "default"
    cfg = make_cfg("resolve_numeric_domain = yes\n")
    assert Resolver(cfg).resolve("joe@127.0.0.1").addr_class == "local"


def test_proxy_interfaces_are_local(make_cfg):
    r = Resolver(make_cfg("proxy_interfaces = 198.51.100.7\n"))
    assert r.resolve("joe@[198.51.100.7]").addr_class == "local"


def test_inet_interfaces_all_uses_host_addresses(make_cfg):
    r = Resolver(make_cfg("inet_interfaces = all\n"))
    assert r.resolve("joe@[127.0.0.1]").addr_class == "local"
    assert r.resolve("joe@[192.0.2.55]").addr_class == "default"


def test_virtual_alias_domain_goes_to_error(make_cfg):
    r = Resolver(make_cfg(CLASSES)).resolve("u@alias.example")
    assert (r.addr_class, r.transport) == ("virtual_alias", "error")
    assert "virtual alias table" in r.nexthop
    assert "error" in r.flags


def test_virtual_mailbox_domain(make_cfg):
    r = Resolver(make_cfg(CLASSES)).resolve("u@mbox.example")
    assert (r.addr_class, r.transport, r.nexthop) == ("virtual_mailbox", "virtual", "mbox.example")


def test_relay_domain(make_cfg):
    r = Resolver(make_cfg(CLASSES)).resolve("u@relay.example")
    assert (r.addr_class, r.transport, r.nexthop) == ("relay", "relay", "relay.example")


def test_default_class(make_cfg):
    r = Resolver(make_cfg(CLASSES)).resolve("u@Elsewhere.ORG")
    assert (r.addr_class, r.transport, r.nexthop, r.recipient) == (
        "default",
        "smtp",
        "elsewhere.org",
        "u@elsewhere.org",
    )


def test_relayhost_for_default_and_relay(make_cfg):
    r = Resolver(make_cfg(CLASSES + "relayhost = [gw.example]:587\n"))
    assert r.resolve("u@elsewhere.org").nexthop == "[gw.example]:587"
    assert r.resolve("u@relay.example").nexthop == "[gw.example]:587"
    assert r.resolve("u@mx.example.com").nexthop == "mx.example.com"


def test_transport_parameter_nexthop_beats_relayhost(make_cfg):
    cfg = make_cfg("relayhost = gw.example\ndefault_transport = smtp:[out.example]\n")
    assert Resolver(cfg).resolve("u@elsewhere.org").nexthop == "[out.example]"


def test_local_transport_nexthop(make_cfg):
    cfg = make_cfg("local_transport = lmtp:unix:/run/lmtp\n")
    r = Resolver(cfg).resolve("u@localhost")
    assert (r.transport, r.nexthop) == ("lmtp", "unix:/run/lmtp")


def test_percent_hack_on_local_domain_resolves_again(make_cfg):
    r = Resolver(make_cfg()).resolve("u%remote.org@localhost")
    assert (r.recipient, r.addr_class) == ("u@remote.org", "default")
    assert "routed" in r.flags


def test_routed_flag_for_foreign_domain_with_percent(make_cfg):
    assert "routed" in Resolver(make_cfg()).resolve("u%x@gmail.com").flags
    assert "routed" not in Resolver(make_cfg()).resolve("u@gmail.com").flags


def test_null_domain_rejected_by_default(make_cfg):
    r = Resolver(make_cfg()).resolve("u@")
    assert "error" in r.flags and r.transport == "error"


def test_null_domain_accepted_when_enabled(make_cfg):
    r = Resolver(make_cfg("resolve_null_domain = yes\n")).resolve("u@")
    assert (r.addr_class, r.recipient) == ("local", "u@mx.example.com")


def test_empty_address_is_mailer_daemon(make_cfg):
    r = Resolver(make_cfg()).resolve("")
    assert r.recipient == "MAILER-DAEMON@mx.example.com"


def test_split_transport():
    assert split_transport("smtp:[relay.example]:587") == ("smtp", "[relay.example]:587")
    assert split_transport("local") == ("local", "")
    assert split_transport(":[gw]") == ("", "[gw]")


TRANSPORT = """
u+x@one.example   uucp:x-host
u@one.example     lmtp:[lmtp.example]:24
one.example       slow:
.sub.example      :[gw.sub.example]
two.example       :
*                 smtp:outbound.example
"""


def _transport_cfg(make_cfg, tmp_path, extra=""):
    path = tmp_path / "transport"
    path.write_text(TRANSPORT)
    return make_cfg(f"transport_maps = texthash:{path}\nrecipient_delimiter = +\n" + extra)


def test_transport_full_address(make_cfg, tmp_path):
    r = Resolver(_transport_cfg(make_cfg, tmp_path)).resolve("u+x@one.example")
    assert (r.transport, r.nexthop) == ("uucp", "x-host")


def test_transport_address_without_extension(make_cfg, tmp_path):
    r = Resolver(_transport_cfg(make_cfg, tmp_path)).resolve("u+y@one.example")
    assert (r.transport, r.nexthop) == ("lmtp", "[lmtp.example]:24")


def test_transport_empty_nexthop_resets_to_domain(make_cfg, tmp_path):
    r = Resolver(_transport_cfg(make_cfg, tmp_path, "relayhost = gw\n")).resolve("v@one.example")
    assert (r.transport, r.nexthop) == ("slow", "one.example")
    assert "transport_map" in r.flags


def test_transport_empty_transport_keeps_class_transport(make_cfg, tmp_path):
    r = Resolver(_transport_cfg(make_cfg, tmp_path)).resolve("v@a.sub.example")
    assert (r.transport, r.nexthop) == ("smtp", "[gw.sub.example]")


def test_transport_dot_form_does_not_match_domain_itself(make_cfg, tmp_path):
    r = Resolver(_transport_cfg(make_cfg, tmp_path)).resolve("v@sub.example")
    assert r.nexthop == "outbound.example"


def test_transport_parent_matching_when_configured(make_cfg, tmp_path):
    cfg = _transport_cfg(make_cfg, tmp_path, "parent_domain_matches_subdomains = transport_maps\n")
    r = Resolver(cfg).resolve("v@deep.one.example")
    assert (r.transport, r.nexthop) == ("slow", "deep.one.example")


def test_transport_null_entry_changes_nothing(make_cfg, tmp_path):
    r = Resolver(_transport_cfg(make_cfg, tmp_path)).resolve("v@two.example")
    assert (r.transport, r.nexthop) == ("smtp", "two.example")


def test_transport_wildcard(make_cfg, tmp_path):
    r = Resolver(_transport_cfg(make_cfg, tmp_path)).resolve("v@elsewhere.org")
    assert (r.transport, r.nexthop) == ("smtp", "outbound.example")


def test_transport_regexp_sees_full_address(make_cfg, tmp_path):
    (tmp_path / "t.re").write_text("/^bulk-.*@/ bulk:\n")
    r = Resolver(make_cfg(f"transport_maps = regexp:{tmp_path}/t.re\n"))
    assert r.resolve("bulk-1@x.org").transport == "bulk"
    assert r.resolve("other@x.org").transport == "smtp"


def test_relocated_user_bounces(make_cfg):
    cfg = make_cfg("relocated_maps = inline:{ old@mx.example.com=new@elsewhere.org }\n")
    r = Resolver(cfg).resolve("old@mx.example.com")
    assert r.transport == "error"
    assert r.nexthop == "5.1.6 User has moved to new@elsewhere.org"
    assert {"relocated", "error"} <= r.flags


SENDER_MAPS = (
    "relayhost = [default-relay.example]\nrecipient_delimiter = +\n"
    "sender_dependent_relayhost_maps = inline:{ "
    "{bulk@news.example=[news-relay.example]:2525}, {@promo.example=[promo-relay.example]}, "
    "{quiet@promo.example=DUNNO}, {<>=[bounce-relay.example]} }\n"
    "sender_dependent_default_transport_maps = inline:{ {@ip2.example=smtp-ip2:} }\n"
)


def test_sender_dependent_relayhost_by_address_then_domain(make_cfg):
    r = Resolver(make_cfg(SENDER_MAPS))
    hop = lambda sender: r.resolve("you@far.example", sender).nexthop  # noqa: E731
    assert hop("bulk@news.example") == "[news-relay.example]:2525"
    assert hop("bulk+list7@news.example") == "[news-relay.example]:2525"  # extension dropped
    assert hop("other@news.example") == "[default-relay.example]"
    assert hop("anyone@promo.example") == "[promo-relay.example]"
    assert hop("quiet@promo.example") == "[default-relay.example]"  # DUNNO: no answer
    assert hop("") == "[bounce-relay.example]"  # the null sender's key, <>
    # no sender to go by (smtpd classifying an address): the global relayhost
    assert r.resolve("you@far.example").nexthop == "[default-relay.example]"


def test_sender_dependent_default_transport_keeps_relayhost_when_it_names_no_hop(make_cfg):
    r = Resolver(make_cfg(SENDER_MAPS))
    got = r.resolve("you@far.example", "me@ip2.example")
    assert (got.transport, got.nexthop) == ("smtp-ip2", "[default-relay.example]")
    assert r.resolve("you@far.example", "me@other.example").transport == "smtp"


def test_sender_dependent_maps_leave_local_and_transport_maps_alone(make_cfg):
    r = Resolver(
        make_cfg(SENDER_MAPS + "transport_maps = inline:{ pinned.example=smtp:[pinned.example] }\n")
    )
    local = r.resolve("joe@mx.example.com", "bulk@news.example")
    assert (local.transport, local.nexthop) == ("local", "mx.example.com")
    pinned = r.resolve("you@pinned.example", "bulk@news.example")
    assert pinned.nexthop == "[pinned.example]"  # transport_maps has the last word


def test_sender_dependent_answers_are_cached_per_sender(make_cfg):
    r = Resolver(make_cfg(SENDER_MAPS))
    first = r.resolve("you@far.example", "bulk@news.example")
    assert r.resolve("you@far.example", "x@promo.example").nexthop == "[promo-relay.example]"
    assert r.resolve("you@far.example", "bulk@news.example") is first
