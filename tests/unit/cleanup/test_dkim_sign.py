"""DKIM signing in cleanup: real queue files, read back as the smtp client sends them, verified by dkimpy."""

import os

import pytest

from tests.support.dkim_keys import write_keys

dkim = pytest.importorskip("dkim")
pytest.importorskip("nacl")

MESSAGE = (
    b"From: Ann Example <ann@example.org>\r\n"
    b"To: bob@example.net\r\n"
    b"Subject: a subject long enough that it was folded\r\n\tby its writer\r\n"
    b"Message-ID: <m1@example.org>\r\n"
    b"Date: Thu, 03 Dec 2026 06:00:00 +0000\r\n"
    b"\r\n"
    b"Hello  there, \r\n\r\nsecond paragraph\r\n" + "8-bit: Grüße\r\n".encode() + b"\r\n\r\n"
)


def make_keys(tmp_path):
    """An RSA and an Ed25519 key for example.org, their key table and their TXT records."""
    return write_keys(tmp_path, [("rsa1", "rsa"), ("ed1", "ed25519")])[0]


def settings(tmp_path, signing: str, extra: str = "") -> str:
    (tmp_path / "signingtable").write_text(signing)
    return (
        f"dkim_key_table = texthash:{tmp_path / 'keytable'}\n"
        f"dkim_signing_table = texthash:{tmp_path / 'signingtable'}\n" + extra
    )


def on_the_wire(content: bytes) -> bytes:
    """The queue file's content as the smtp client sends it: CRLF line ends, and
    lines over smtp_line_length_limit (998) broken with CRLF and a blank."""
    out = []
    for line in content.split(b"\n"):
        out.append(line[:998])
        rest = line[998:]
        while rest:
            out.append(b" " + rest[:997])
            rest = rest[997:]
    return b"\r\n".join(out)


def verdicts(content: bytes, records: dict) -> list[bool]:
    message = on_the_wire(content)

    def dnsfunc(name, timeout=5):
        return records[name.decode().split(".")[0]].encode()

    d = dkim.DKIM(message)
    out = []
    for i in range(message.count(b"\r\nDKIM-Signature:") + message.startswith(b"DKIM-Signature:")):
        try:
            out.append(d.verify(idx=i, dnsfunc=dnsfunc))
        except dkim.ValidationError:
            out.append(False)
    return out


def test_two_keys_sign_and_both_verify(instance, tmp_path):
    records = make_keys(tmp_path)
    inst = instance(settings(tmp_path, "@example.org rsa1, ed1\n"))
    out = inst.run(MESSAGE)
    assert out.result.action == "queued"
    lines = out.header_lines()
    assert lines[0].startswith(b"DKIM-Signature: v=1; a=rsa-sha256;")
    received = [i for i, line in enumerate(lines) if line.startswith(b"Received: from helo")]
    assert received and received[0] > 1  # below the signatures
    assert verdicts(out.content, records) == [True, True]


def test_signed_by_from_address_when_the_sender_has_no_entry(instance, tmp_path):
    records = make_keys(tmp_path)
    inst = instance(settings(tmp_path, "ann@example.org ed1\n"))
    out = inst.run(MESSAGE, sender="bounces+123@mailer.example.net")
    assert verdicts(out.content, records) == [True]
    assert b"a=ed25519-sha256" in out.content


def test_no_entry_no_signature(instance, tmp_path):
    make_keys(tmp_path)
    inst = instance(settings(tmp_path, "@other.example rsa1\n"))
    out = inst.run(MESSAGE)
    assert out.result.action == "queued" and b"DKIM-Signature" not in out.content


@pytest.mark.parametrize("canon", ["simple/simple", "relaxed/simple", "simple/relaxed"])
def test_canonicalizations_and_body_checks_path(instance, tmp_path, canon):
    records = make_keys(tmp_path)
    (tmp_path / "body_checks").write_text("/^second/ REPLACE replaced paragraph\n")
    extra = f"dkim_canonicalization = {canon}\nbody_checks = regexp:{tmp_path / 'body_checks'}\n"
    inst = instance(settings(tmp_path, "@example.org rsa1\n", extra))
    out = inst.run(MESSAGE, chunks=[7, 100, 180, 200])  # cut anywhere, also mid-line
    assert b"\nreplaced paragraph\n" in out.content  # what is signed is what was written
    assert verdicts(out.content, records) == [True]


@pytest.mark.parametrize(
    "body", [b"", b"no final line end", b"\r\n\r\n", b"bare\rcr\r\n" + b"x" * 3000 + b"\r\n"]
)
def test_odd_bodies(instance, tmp_path, body):
    records = make_keys(tmp_path)
    inst = instance(settings(tmp_path, "@example.org ed1\n"))
    head = MESSAGE.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
    out = inst.run(head + body)
    assert verdicts(out.content, records) == [True]


def test_header_line_over_the_smtp_limit(instance, tmp_path):
    # the client breaks a 1,500-byte Subject: line; the signature is over that
    records = make_keys(tmp_path)
    inst = instance(settings(tmp_path, "@example.org rsa1, ed1\n"))
    message = MESSAGE.replace(b"Subject: a subject", b"Subject: " + b"s" * 1500 + b" subject")
    out = inst.run(message)
    assert verdicts(out.content, records) == [True, True]


def test_key_open_to_others_defers_and_logs(instance, tmp_path):
    make_keys(tmp_path)
    os.chmod(tmp_path / "rsa1.pem", 0o644)
    inst = instance(settings(tmp_path, "@example.org rsa1\n"))
    out = inst.run(MESSAGE)
    assert (out.result.action, out.result.reply) == ("deferred", "4.7.0 DKIM signing failed")
    assert inst.files() == []
    assert "DKIM signing failed, message deferred" in inst.maillog()
    assert "rsa1.pem: key file is open to others" in inst.maillog()


def test_failure_action_send_queues_unsigned(instance, tmp_path):
    make_keys(tmp_path)
    extra = "dkim_failure_action = send\n"
    inst = instance(settings(tmp_path, "@example.org missing, rsa1\n", extra))
    out = inst.run(MESSAGE)
    assert out.result.action == "queued" and b"DKIM-Signature" not in out.content
    assert "dkim_key_table has no key named 'missing'" in inst.maillog()
    assert "message sent unsigned" in inst.maillog()


def test_bad_settings_are_config_errors(instance, tmp_path):
    from mta.config.errors import ConfigError

    make_keys(tmp_path)
    with pytest.raises(ConfigError, match="dkim_failure_action"):
        instance(settings(tmp_path, "", "dkim_failure_action = maybe\n"))
    with pytest.raises(ConfigError, match="dkim_canonicalization"):
        instance(settings(tmp_path, "", "dkim_canonicalization = loose\n"))


def test_requeued_message_is_signed_again_not_twice(instance, tmp_path):
    """postsuper -r feeds a signed message through cleanup again: our old
    signatures are replaced; a third party's stays."""
    from mta.cleanup.cleanup import Requeue

    records = make_keys(tmp_path)
    inst = instance(settings(tmp_path, "@example.org rsa1, ed1\n"))
    first = inst.run(MESSAGE)
    foreign = b"DKIM-Signature: v=1; a=rsa-sha256; d=other.example; s=x; h=from; bh=AA==; b=AA==\n"
    again = inst.run(
        foreign + first.content, requeue=Requeue(arrival=first.msg.arrival, warn_time=0, uid=0)
    )
    heads = [h for h in again.header_lines() if h.startswith(b"DKIM-Signature:")]
    assert len(heads) == 3  # ours, one per key, and the foreign one kept
    assert sum(b"d=other.example" in h for h in heads) == 1
    assert verdicts(again.content, dict(records, x="v=DKIM1; p=")) == [True, True, False]
