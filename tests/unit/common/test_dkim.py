"""DKIM signing (common/dkim.py), checked by dkimpy, an implementation nobody here wrote."""

import os

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from mta.common.dkim import (
    ED25519,
    RSA,
    DkimError,
    DkimKey,
    Signer,
    dns_record,
    generate_key,
    load_key,
    private_pem,
)

dkim = pytest.importorskip("dkim")
pytest.importorskip("nacl")  # dkimpy needs PyNaCl for ed25519-sha256

HEADERS = [
    b"From: Ann Example <ann@example.org>",
    b"To: bob@example.net,\n carol@example.net",  # folded as the queue file keeps it
    b"Subject: a subject that is long enough to be folded over\n\tthree\n  lines",
    b"Date: Thu, 03 Dec 2026 06:00:00 +0000",
    b"Message-ID: <1.2@example.org>",
    b"MIME-Version: 1.0",
    b"Content-Type: text/plain; charset=utf-8",
    b"Content-Transfer-Encoding: 8bit",
    b"X-Mailer:   spaced   out   ",
]
BODY = "Grüße  aus \t Köln \r\n\r\n\tindented line\r\nlast\r\n\r\n\r\n".encode()


def write_key(tmp_path, kind, bits=2048, mode=0o600, name="k.pem"):
    key = generate_key(kind, bits)
    path = tmp_path / name
    path.write_bytes(private_pem(key))
    os.chmod(path, mode)
    return key, str(path)


def wire(fields, headers, body):
    lines = [f.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") for f in fields + headers]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def verify_all(message, records):
    """dkimpy's verdict on every DKIM-Signature of message, keys from records (selector -> TXT)."""

    def dnsfunc(name, timeout=5):
        return records[name.decode().split(".")[0]].encode()

    d = dkim.DKIM(message)
    verdicts = []
    for i in range(message.count(b"DKIM-Signature:")):
        try:
            verdicts.append(d.verify(idx=i, dnsfunc=dnsfunc))
        except dkim.ValidationError:  # dkimpy's way to say "body hash mismatch"
            verdicts.append(False)
    return verdicts


def sign(keys, headers=HEADERS, body=BODY, **kw):
    signer = Signer(keys, **kw)
    signer.body_text(body)
    return signer.sign(headers, now=1_796_000_000)


@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
@pytest.mark.parametrize(
    "canon", ["relaxed/relaxed", "simple/simple", "relaxed/simple", "simple/relaxed"]
)
def test_signature_verifies_with_dkimpy(tmp_path, kind, canon):
    key, path = write_key(tmp_path, kind)
    fields = sign([load_key("example.org", "s1", path)], canon=canon)
    assert len(fields) == 1
    assert verify_all(wire(fields, HEADERS, BODY), {"s1": dns_record(key)}) == [True]
    assert f"c={canon};".encode() in fields[0]


def test_double_signing_rsa_and_ed25519(tmp_path):
    rsa_key, rsa_path = write_key(tmp_path, "rsa", name="rsa.pem")
    ed_key, ed_path = write_key(tmp_path, "ed25519", name="ed.pem")
    keys = [load_key("example.org", "r1", rsa_path), load_key("example.org", "e1", ed_path)]
    assert [k.algorithm for k in keys] == [RSA, ED25519]
    fields = sign(keys)
    assert [b"a=rsa-sha256" in fields[0], b"a=ed25519-sha256" in fields[1]] == [True, True]
    records = {"r1": dns_record(rsa_key), "e1": dns_record(ed_key)}
    assert verify_all(wire(fields, HEADERS, BODY), records) == [True, True]


@pytest.mark.parametrize(
    "body", [b"", b"\r\n\r\n", b"no line end", b"bare\rcr\r\n", b"\xff\xfe\r\n"]
)
def test_odd_bodies(tmp_path, body):
    key, path = write_key(tmp_path, "ed25519")
    for canon in ("relaxed/relaxed", "simple/simple"):
        fields = sign([load_key("example.org", "s1", path)], body=body, canon=canon)
        assert verify_all(wire(fields, HEADERS, body), {"s1": dns_record(key)}) == [True]


def test_changed_body_or_signed_header_fails(tmp_path):
    key, path = write_key(tmp_path, "ed25519")
    fields = sign([load_key("example.org", "s1", path)])
    records = {"s1": dns_record(key)}
    assert verify_all(wire(fields, HEADERS, BODY + b"more\r\n"), records) == [False]
    changed = [HEADERS[0], HEADERS[1], b"Subject: another subject", *HEADERS[3:]]
    assert verify_all(wire(fields, changed, BODY), records) == [False]
    # an unsigned header may change
    unsigned = HEADERS[:-1] + [b"X-Mailer: something else"]
    assert verify_all(wire(fields, unsigned, BODY), records) == [True]


def test_oversigned_headers_cannot_be_added(tmp_path):
    key, path = write_key(tmp_path, "ed25519")
    fields = sign([load_key("example.org", "s1", path)])
    h = fields[0].replace(b"\r\n\t", b"").split(b"h=")[1].split(b";")[0].split(b":")
    assert h.count(b"from") == 2 and h.count(b"subject") == 2 and h.count(b"message-id") == 2
    assert b"x-mailer" not in h
    records = {"s1": dns_record(key)}
    # a second From: put in after signing breaks the signature
    added = [b"From: mallory@example.com", *HEADERS]
    assert verify_all(wire(fields, added, BODY), records) == [False]


def test_tags(tmp_path):
    _, path = write_key(tmp_path, "rsa")
    key = load_key("Example.ORG.", "s1", path)
    [field] = sign([key], expire=86400)
    flat = field.replace(b"\r\n\t", b" ")
    assert b"d=example.org;" in flat and b"s=s1;" in flat
    assert b"t=1796000000;" in flat and b"x=1796086400;" in flat
    assert b" l=" not in flat  # never: it lets anyone append content
    assert all(len(line) <= 78 for line in field.split(b"\r\n")[:-1])
    [plain] = sign([key])
    assert b"x=" not in plain


def test_load_key_refusals(tmp_path):
    _, loose = write_key(tmp_path, "ed25519", mode=0o644, name="loose.pem")
    with pytest.raises(DkimError, match="loose.pem: key file is open to others"):
        load_key("example.org", "s1", loose)
    junk = tmp_path / "junk.pem"
    junk.write_bytes(b"-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    os.chmod(junk, 0o600)
    with pytest.raises(DkimError, match="junk.pem: not an unencrypted PEM private key"):
        load_key("example.org", "s1", str(junk))
    ec_path = tmp_path / "ec.pem"
    ec_path.write_bytes(private_pem(ec.generate_private_key(ec.SECP256R1())))
    os.chmod(ec_path, 0o600)
    with pytest.raises(DkimError, match="ec.pem: neither an RSA nor an Ed25519 key"):
        load_key("example.org", "s1", str(ec_path))
    with pytest.raises(DkimError, match="missing.pem: cannot open key file"):
        load_key("example.org", "s1", str(tmp_path / "missing.pem"))
    with pytest.raises(DkimError, match="1024 to 4096 bits, not 512"):
        generate_key("rsa", 512)
    with pytest.raises(DkimError, match="bad canonicalization"):
        Signer([], canon="loose/relaxed")


_ED = generate_key("ed25519")
_ED_KEY = (_ED, DkimKey("example.org", "s1", ED25519, _ED))  # one key: key generation is slow

# random messages: header values with folds and white-space runs, bodies of any
# printable or 8-bit lines, empty lines anywhere; every signature must verify
FIELD_TEXT = st.lists(
    st.sampled_from([b"a", b"Z", b" ", b"\t", b"  ", b"\r\n ", b"\r\n\t", b";", b"\xc3\xa9"]),
    min_size=1,
    max_size=12,
).map(lambda parts: b"x" + b"".join(parts).rstrip(b" \t\r\n"))
LINES = st.lists(
    st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"").rstrip(b"\r")), max_size=8
)


@settings(max_examples=40, deadline=None)
@given(
    FIELD_TEXT,
    FIELD_TEXT,
    LINES,
    st.sampled_from(["relaxed/relaxed", "simple/simple", "relaxed/simple", "simple/relaxed"]),
)
def test_random_messages_verify_with_dkimpy(subject, other, lines, canon):
    key = _ED_KEY[0]
    headers = [b"From: a@example.org", b"Subject: " + subject, b"X-Other: " + other]
    body = b"".join(line + b"\r\n" for line in lines)
    signer = Signer([_ED_KEY[1]], canon=canon)
    signer.body_text(body)
    fields = signer.sign(headers)
    assert verify_all(wire(fields, headers, body), {"s1": dns_record(key)}) == [True]
