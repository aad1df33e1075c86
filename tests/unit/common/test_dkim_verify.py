"""DKIM verification (common/dkim_verify.py): dkimpy's signatures and ours, and every way to fail."""

import base64

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from mta.common.dkim import DkimKey, Signer, dns_record, generate_key, private_pem
from mta.common.dkim_verify import tag_list, verify_message

dkim = pytest.importorskip("dkim")
pytest.importorskip("nacl")

HEADERS = [
    b"From: Ann <ann@example.org>",
    b"To: bob@example.net",
    b"Subject: checked\r\n  folded",
    b"Date: Thu, 03 Dec 2026 06:00:00 +0000",
    b"Message-ID: <v1@example.org>",
]
BODY = b"line one  \r\n\r\nline\ttwo\r\n\r\n"
MESSAGE = b"\r\n".join(HEADERS) + b"\r\n\r\n" + BODY


def lookup_for(records):
    def lookup(name):
        record = records.get(name)
        if record == "retry":
            return "retry", []
        return ("ok", [record]) if record else ("notfound", [])

    return lookup


@pytest.mark.parametrize("alg", [b"rsa-sha256", b"ed25519-sha256"])
@pytest.mark.parametrize(
    "canon", [(b"relaxed", b"relaxed"), (b"simple", b"simple"), (b"relaxed", b"simple")]
)
@pytest.mark.parametrize("length", [False, True])
def test_dkimpy_signatures_pass(alg, canon, length):
    key = generate_key("ed25519" if alg.startswith(b"ed") else "rsa")
    if alg.startswith(b"ed"):  # dkimpy takes an Ed25519 key as its base64 seed
        raw = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        secret = base64.b64encode(raw)
    else:
        secret = private_pem(key)
    field = dkim.sign(
        MESSAGE,
        b"s1",
        b"example.org",
        secret,
        canonicalize=canon,
        signature_algorithm=alg,
        length=length,
    )
    records = {"s1._domainkey.example.org": dns_record(key)}
    [result] = verify_message(field + MESSAGE, lookup_for(records))
    assert (result.result, result.domain, result.selector) == ("pass", "example.org", "s1")
    # with l=, content appended after signing is outside the signature
    if length:
        [again] = verify_message(field + MESSAGE + b"appended\r\n", lookup_for(records))
        assert again.result == "pass"


def ours(kind="rsa", now=None, **kw):
    key = generate_key(kind)
    dk = DkimKey("example.org", "s1", "rsa-sha256" if kind == "rsa" else "ed25519-sha256", key)
    signer = Signer([dk], **kw)
    signer.body_text(BODY)
    [field] = signer.sign(HEADERS, now=now)
    return field + b"\r\n" + MESSAGE, {"s1._domainkey.example.org": dns_record(key)}


@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
def test_our_signatures_pass_and_tampering_fails(kind):
    message, records = ours(kind)
    assert [r.result for r in verify_message(message, lookup_for(records))] == ["pass"]
    # LF line ends, as a file on disk may have them, change nothing
    assert verify_message(message.replace(b"\r\n", b"\n"), lookup_for(records))[0].result == "pass"
    body = verify_message(message.replace(b"line one", b"line 1"), lookup_for(records))[0]
    assert (body.result, body.reason) == ("fail", "body hash mismatch")
    head = verify_message(
        message.replace(b"Subject: checked", b"Subject: changed"), lookup_for(records)
    )[0]
    assert (head.result, head.reason) == ("fail", "signature does not verify")


def test_key_problems():
    message, records = ours("rsa")
    name = "s1._domainkey.example.org"
    assert verify_message(message, lookup_for({}))[0].reason == "no key record"
    assert verify_message(message, lookup_for({name: "retry"}))[0].result == "temperror"
    revoked = verify_message(message, lookup_for({name: "v=DKIM1; k=rsa; p="}))[0]
    assert (revoked.result, revoked.reason) == ("permerror", "key revoked (empty p=)")
    ed_key = dns_record(generate_key("ed25519"))
    mismatch = verify_message(message, lookup_for({name: ed_key}))[0]
    assert mismatch.result == "permerror" and "does not match a=" in mismatch.reason
    other = verify_message(message, lookup_for({name: dns_record(generate_key("rsa"))}))[0]
    assert other.result == "fail"


def test_expired_and_malformed_signatures():
    message, records = ours("ed25519", expire=60, now=1_000_000)
    assert verify_message(message, lookup_for(records))[0].reason == "signature expired"
    broken = b"DKIM-Signature: v=1; a=rsa-sha256; d=example.org; d=again\r\n" + MESSAGE
    assert verify_message(broken, lookup_for({}))[0].result == "permerror"
    missing = b"DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=s1; bh=AAAA\r\n" + MESSAGE
    assert verify_message(missing, lookup_for({}))[0].reason == "no b= tag"
    sha1 = b"DKIM-Signature: v=1; a=rsa-sha1; b=AA; bh=AA; d=x; h=from; s=s\r\n" + MESSAGE
    assert verify_message(sha1, lookup_for({}))[0].reason == "algorithm rsa-sha1 not supported"
    assert verify_message(MESSAGE, lookup_for({})) == []


def test_tag_list():
    assert tag_list(b" v=1;\r\n\ta = rsa-sha256 ; h=from :\r\n to;") == {
        "v": b"1",
        "a": b"rsa-sha256",
        "h": b"from :\r\n to",
    }
    with pytest.raises(ValueError):
        tag_list(b"v=1; v=2")
    with pytest.raises(ValueError):
        tag_list(b"v=1; novalue")
