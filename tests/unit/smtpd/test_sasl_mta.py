"""The built-in SASL backend's password hashes and mechanism filter."""

import pytest

from mta.smtpd.sasl import SECURITY_OPTIONS, allowed
from mta.smtpd.sasl_mta import hash_password, valid_hash, verify_password


@pytest.mark.parametrize("scheme", ["scrypt", "pbkdf2_sha256"])
def test_a_hash_verifies_its_password_only(scheme):
    stored = hash_password("correct horse", scheme)
    assert stored.startswith(scheme + "$") and valid_hash(stored)
    assert "correct horse" not in stored
    assert verify_password("correct horse", stored)
    assert not verify_password("correct hors", stored)
    assert not verify_password("", stored)


def test_each_hash_has_its_own_salt():
    assert hash_password("same") != hash_password("same")


def test_a_malformed_hash_matches_nothing():
    for stored in ("", "plain-text", "scrypt$1$2$3$!!$!!", "scrypt$x$8$1$AA$AA", "md5$abc"):
        assert not valid_hash(stored)
        assert not verify_password("", stored)


def test_a_hash_that_asks_for_too_much_memory_is_refused():
    stored = hash_password("pw").split("$")
    stored[1] = str(1 << 24)  # N = 16M: 16 GiB with r=8
    assert not verify_password("pw", "$".join(stored))


def test_security_options_filter_mechanisms():
    plain = frozenset({"plaintext"})
    assert allowed(plain, frozenset({"noanonymous"}))
    assert not allowed(plain, frozenset({"noplaintext"}))
    assert not allowed(frozenset({"anonymous"}), frozenset({"noanonymous"}))
    assert not allowed(frozenset({"dictionary", "active"}), frozenset({"nodictionary"}))
    assert not allowed(plain, frozenset({"mutual_auth"}))
    assert allowed(frozenset({"mutual-auth"}), frozenset({"mutual_auth"}))
    assert set(SECURITY_OPTIONS) >= {"noplaintext", "noanonymous", "noactive", "nodictionary"}
