"""DANE TLSA matching (mta/smtp/dane.py): records, selectors, matching types, DANE-EE, DANE-TA."""

import hashlib
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mta.smtp import dane
from mta.smtp.dane import TlsaRecord, parse_tlsa, tlsa_matches, usable
from tests.support.certs import make_ca, make_cert, tlsa

CA = make_ca("Test CA")
OTHER_CA = make_ca("Test CA")  # same name, other key
LEAF = make_cert("mx.example.com", issuer=CA)
SELF = make_cert("mx.example.com")
STRANGER = make_cert("mx.example.com")
NAMES = ("mx.example.com", "example.com")
ALL = {1: "sha256", 2: "sha512"}


def rec(made, usage=3, selector=1, mtype=1) -> TlsaRecord:
    return parse_tlsa(tlsa(made, usage, selector, mtype))


# ---------------------------------------------------------------- records


def test_parse_tlsa_reads_master_file_text_with_split_hex():
    r = parse_tlsa("3 1 1 ABCD ef01")
    assert r == TlsaRecord(3, 1, 1, bytes.fromhex("abcdef01"))


@pytest.mark.parametrize("text", ["3 1 1", "3 1 x abcd", "3 1 1 abc", "300 1 1 ab", "-1 1 1 ab"])
def test_parse_tlsa_refuses_malformed_records(text):
    assert parse_tlsa(text) is None


@pytest.mark.parametrize("usage", [0, 1, 4, 255])
def test_pkix_usages_and_unknown_usages_are_unusable(usage):
    assert not usable(TlsaRecord(usage, 1, 1, b"\0" * 32), ALL)


def test_unknown_selector_and_matching_type_are_unusable():
    assert not usable(TlsaRecord(3, 2, 1, b"\0" * 32), ALL)
    assert not usable(TlsaRecord(3, 1, 3, b"\0" * 32), ALL)


def test_digest_of_the_wrong_length_is_unusable():
    assert not usable(TlsaRecord(3, 1, 1, b"\0" * 31), ALL)
    assert not usable(TlsaRecord(3, 1, 2, b"\0" * 32), ALL)
    assert usable(TlsaRecord(3, 1, 2, b"\0" * 64), ALL)


def test_a_digest_left_out_of_tls_dane_digests_is_unusable():
    only256 = dane.parse_dane_digests("sha256")
    assert not usable(TlsaRecord(3, 1, 2, b"\0" * 64), only256)
    assert usable(TlsaRecord(3, 1, 1, b"\0" * 32), only256)


def test_tls_dane_digests_takes_postfix_numbers_and_refuses_others():
    assert dane.parse_dane_digests("sha512=2, sha256=1") == {2: "sha512", 1: "sha256"}
    for bad in ("md5", "sha256=2", ""):
        with pytest.raises(ValueError):
            dane.parse_dane_digests(bad)


def test_spki_is_cut_out_of_the_certificate_unchanged():
    for made in (LEAF, SELF, CA, make_cert("r.example", rsa=True)):
        assert dane.spki_der(made.der) == made.spki


def test_spki_of_garbage_is_an_error_not_a_match():
    with pytest.raises(ValueError):
        dane.spki_der(b"\x30\x82\xff\xff")
    assert not tlsa_matches(b"garbage", [], [rec(SELF)], NAMES)


# ---------------------------------------------------------------- DANE-EE


@pytest.mark.parametrize("selector", [0, 1])
@pytest.mark.parametrize("mtype", [0, 1, 2])
def test_dane_ee_matches_the_server_certificate(selector, mtype):
    assert tlsa_matches(SELF.der, [], [rec(SELF, 3, selector, mtype)])


@pytest.mark.parametrize("selector", [0, 1])
@pytest.mark.parametrize("mtype", [0, 1, 2])
def test_dane_ee_of_another_certificate_does_not_match(selector, mtype):
    assert not tlsa_matches(STRANGER.der, [], [rec(SELF, 3, selector, mtype)])


def test_dane_ee_checks_no_name_and_no_dates():
    expired = make_cert("elsewhere.example", days=(-10, -5))
    assert tlsa_matches(expired.der, [], [rec(expired)], names=("mx.example.com",))


def test_one_matching_record_among_others_is_enough():
    records = [rec(STRANGER), TlsaRecord(1, 1, 1, hashlib.sha256(SELF.spki).digest()), rec(SELF)]
    assert tlsa_matches(SELF.der, [], records)


def test_pkix_ee_record_of_the_right_certificate_is_not_used():
    # usage 1 (PKIX-EE) is never usable for SMTP, even when its data matches
    r = rec(SELF, 1, 1, 1)
    assert not tlsa_matches(SELF.der, [], [r])


@settings(max_examples=60, deadline=None)
@given(
    selector=st.sampled_from([0, 1]),
    mtype=st.sampled_from([0, 1, 2]),
    flip=st.integers(min_value=0, max_value=10**6),
    bit=st.integers(min_value=0, max_value=7),
)
def test_any_changed_bit_of_the_record_data_stops_the_match(selector, mtype, flip, bit):
    good = rec(SELF, 3, selector, mtype)
    data = bytearray(good.data)
    data[flip % len(data)] ^= 1 << bit
    bad = TlsaRecord(3, selector, mtype, bytes(data))
    assert tlsa_matches(SELF.der, [], [good])
    assert not tlsa_matches(SELF.der, [], [bad])


@settings(max_examples=40, deadline=None)
@given(st.binary(min_size=0, max_size=300))
def test_arbitrary_certificate_bytes_never_match_or_raise(junk):
    records = [rec(SELF, 3, s, m) for s in (0, 1) for m in (0, 1, 2)] + [rec(CA, 2, 1, 0)]
    assert not tlsa_matches(junk, [junk], records, NAMES)


# ---------------------------------------------------------------- DANE-TA


@pytest.mark.parametrize("selector", [0, 1])
@pytest.mark.parametrize("mtype", [0, 1, 2])
def test_dane_ta_in_the_sent_chain_authenticates_the_server(selector, mtype):
    assert tlsa_matches(LEAF.der, [LEAF.der, CA.der], [rec(CA, 2, selector, mtype)], NAMES)


def test_dane_ta_needs_the_mx_host_or_nexthop_name_in_the_certificate():
    records = [rec(CA, 2, 1, 1)]
    assert not tlsa_matches(LEAF.der, [CA.der], records, ("other.example",))
    assert tlsa_matches(LEAF.der, [CA.der], records, ("other.example", "mx.example.com"))


def test_dane_ta_name_may_be_a_wildcard_for_one_label():
    leaf = make_cert("*.example.com", issuer=CA)
    assert tlsa_matches(leaf.der, [CA.der], [rec(CA, 2, 1, 1)], ("mx.example.com",))
    assert not tlsa_matches(leaf.der, [CA.der], [rec(CA, 2, 1, 1)], ("a.mx.example.com",))
    assert not tlsa_matches(leaf.der, [CA.der], [rec(CA, 2, 1, 1)], ("example.com",))


def test_dane_ta_refuses_a_server_certificate_the_anchor_did_not_sign():
    forged = make_cert("mx.example.com", issuer=OTHER_CA)  # same issuer name, other key
    assert not tlsa_matches(forged.der, [CA.der], [rec(CA, 2, 1, 1)], NAMES)
    assert not tlsa_matches(forged.der, [], [rec(CA, 2, 0, 0)], NAMES)
    assert not tlsa_matches(forged.der, [], [rec(CA, 2, 1, 0)], NAMES)


def test_dane_ta_refuses_an_expired_server_certificate():
    old = make_cert("mx.example.com", issuer=CA, days=(-10, -2))
    assert not tlsa_matches(old.der, [CA.der], [rec(CA, 2, 1, 1)], NAMES)
    assert not tlsa_matches(old.der, [CA.der], [rec(CA, 2, 1, 1)], NAMES, now=time.time())


def test_dane_ta_through_an_intermediate():
    inter = make_ca("Intermediate", issuer=CA)
    leaf = make_cert("mx.example.com", issuer=inter)
    assert tlsa_matches(leaf.der, [inter.der, CA.der], [rec(CA, 2, 1, 1)], NAMES)
    assert tlsa_matches(leaf.der, [inter.der], [rec(inter, 2, 0, 1)], NAMES)
    # a chain the server did not complete: the root is not there and only a digest is known
    assert not tlsa_matches(leaf.der, [inter.der], [rec(CA, 2, 1, 1)], NAMES)


@pytest.mark.parametrize("selector", [0, 1])
def test_dane_ta_carried_whole_by_the_record_need_not_be_sent(selector):
    assert tlsa_matches(LEAF.der, [], [rec(CA, 2, selector, 0)], NAMES)


def test_dane_ta_record_for_the_server_certificate_itself_is_not_an_ee_match():
    # a 2 x x record naming the leaf: the leaf is no anchor of itself
    assert not tlsa_matches(SELF.der, [], [rec(SELF, 2, 1, 1)], NAMES)


def test_rsa_chains_verify_too():
    ca = make_ca("RSA CA", rsa=True)
    leaf = make_cert("mx.example.com", issuer=ca, rsa=True)
    assert tlsa_matches(leaf.der, [ca.der], [rec(ca, 2, 1, 2)], NAMES)


def test_name_matching_is_case_blind_and_ignores_a_final_dot():
    assert dane.name_matches("MX.Example.COM", "mx.example.com.")
    assert not dane.name_matches("*.com", "example.com")
    assert not dane.name_matches("mx.example.com", "example.com")
