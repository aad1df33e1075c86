"""cidr: tables: IPv4/IPv6 networks, negation, if/endif, bad rules."""

from mta.maps import open_map
from mta.maps.dict_cidr import parse_cidr_pattern


def table(tmp_path, text):
    src = tmp_path / "c.cidr"
    src.write_text(text)
    return open_map(f"cidr:{src}")


def test_networks_in_order(tmp_path):
    t = table(tmp_path, "192.168.1.1 one\n192.168.0.0/16 lan\n0.0.0.0/0 world\n")
    assert t.lookup("192.168.1.1") == "one"
    assert t.lookup("192.168.7.7") == "lan"
    assert t.lookup("8.8.8.8") == "world"


def test_ipv6_bracket_forms(tmp_path):
    t = table(tmp_path, "[::1]/128 lo\n[2001:db8::]/32 doc\n")
    assert t.lookup("::1") == "lo" and t.lookup("2001:db8::5") == "doc"
    assert t.lookup("10.0.0.1") is None


def test_non_address_key_matches_nothing_even_negated(tmp_path):
    t = table(tmp_path, "!10.0.0.0/8 outside\n")
    assert t.lookup("host.example") is None
    assert t.lookup("[11.0.0.1]") is None
    assert t.lookup("11.0.0.1") == "outside"


def test_if_endif(tmp_path):
    t = table(tmp_path, "if 10.0.0.0/8\n10.1.0.0/16 ten-one\nendif\n0.0.0.0/0 rest\n")
    assert t.lookup("10.1.2.3") == "ten-one"
    assert t.lookup("10.2.2.3") == "rest"


def test_host_bits_rule_is_skipped_with_warning(tmp_path, warnings):
    t = table(tmp_path, "1.2.3.4/24 bad\n")
    assert t.lookup("1.2.3.4") is None
    assert warnings == [
        f'{tmp_path}/c.cidr, line 1: non-null host address bits in "1.2.3.4/24", '
        'perhaps you should use "1.2.3.0/24" instead: skipping this rule'
    ]


def test_parse_pattern_rejects_long_prefix():
    import pytest

    with pytest.raises(ValueError, match="bad mask length"):
        parse_cidr_pattern("1.2.3.0/33")


def test_inline_cidr():
    assert open_map("cidr:{ {10.0.0.0/8 OK} }").lookup("10.9.9.9") == "OK"
