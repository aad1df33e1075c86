"""Which addresses an inet service listens on."""

import socket

import pytest

from mta.master.listen import choose_inet_addresses, inet_families, service_port

V4, V6 = socket.AF_INET, socket.AF_INET6


def fake_resolver(host, family):
    table = {("mail.example", V4): ["192.0.2.1"], ("mail.example", V6): ["2001:db8::1"]}
    return [(family, a) for a in table.get((host, family), [])]


def test_all_interfaces_all_protocols():
    assert choose_inet_addresses("", ["all"], ["all"]) == [(V4, "0.0.0.0"), (V6, "::")]


def test_all_without_ipv6_support():
    assert choose_inet_addresses("", ["all"], ["all"], ipv6_ok=False) == [(V4, "0.0.0.0")]


def test_loopback_only():
    assert choose_inet_addresses("", ["loopback-only"], ["all"]) == [
        (V4, "127.0.0.1"),
        (V6, "::1"),
    ]


def test_loopback_only_ipv4():
    assert choose_inet_addresses("", ["loopback-only"], ["ipv4"]) == [(V4, "127.0.0.1")]


def test_explicit_host_in_service_name_wins():
    assert choose_inet_addresses("192.0.2.7", ["all"], ["all"]) == [(V4, "192.0.2.7")]
    assert choose_inet_addresses("[::1]", ["all"], ["all"]) == [(V6, "::1")]


def test_interface_list_with_names_and_literals():
    got = choose_inet_addresses(
        "", ["127.0.0.1", "mail.example"], ["ipv4", "ipv6"], resolver=fake_resolver
    )
    assert got == [(V4, "127.0.0.1"), (V4, "192.0.2.1"), (V6, "2001:db8::1")]


def test_protocols_filter_resolved_names():
    got = choose_inet_addresses("mail.example", [], ["ipv6"], resolver=fake_resolver)
    assert got == [(V6, "2001:db8::1")]


def test_unknown_host_is_an_error():
    with pytest.raises(ValueError, match="host not found: nowhere"):
        choose_inet_addresses("", ["nowhere"], ["ipv4"], resolver=fake_resolver)


def test_bad_protocol_is_an_error():
    with pytest.raises(ValueError, match="bad inet_protocols value: ipx"):
        inet_families(["ipx"])


def test_service_port_by_number_and_name():
    assert service_port("2525") == 2525
    assert service_port("smtp") == 25
    with pytest.raises(ValueError):
        service_port("no-such-service-name")


def test_pass_service_listens_on_a_unix_socket_like_unix(tmp_path):
    import os
    import stat

    from mta.config import load_config
    from mta.config.master_cf import parse_master_cf
    from mta.master.listen import close_listeners, listen_key, open_listeners

    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "main.cf").write_text(f"queue_directory = {tmp_path}/q\n")
    os.makedirs(tmp_path / "q" / "private")
    cfg = load_config(str(conf))
    (entry,) = parse_master_cf("smtpd pass - - n - - smtpd\n", "master.cf", 100)
    key = listen_key(entry, cfg)
    assert key == ("pass", f"{tmp_path}/q/private/smtpd", True)
    socks = open_listeners(key, 100, None)
    try:
        assert socks[0].family == socket.AF_UNIX
        assert stat.S_ISSOCK(os.stat(key[1]).st_mode)
    finally:
        close_listeners(socks)
