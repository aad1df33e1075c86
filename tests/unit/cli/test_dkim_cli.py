"""mta dkim keygen (the key file, its mode, its TXT record) and mta dkim check (through DNS)."""

import json
import os
import pwd
import stat

import pytest

from mta.cli.main import run
from mta.common import dns as mta_dns
from mta.common.dkim import Signer, dns_record, generate_key, load_key, private_pem
from tests.support.dns_server import DnsServer
from tests.support.instance import make_instance

dkim = pytest.importorskip("dkim")
pytest.importorskip("nacl")


@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
def test_keygen_writes_a_private_key_and_prints_its_record(tmp_path, capsys, kind):
    assert (
        run(
            [
                "dkim",
                "keygen",
                "Example.ORG",
                "s1",
                "--type",
                kind,
                "--dir",
                str(tmp_path),
                "--json",
            ]
        )
        == 0
    )
    row = json.loads(capsys.readouterr().out)
    path = tmp_path / "example.org.s1.pem"
    assert row["key_file"] == str(path) and row["name"] == "s1._domainkey.example.org"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert row["txt"].startswith(f"v=DKIM1; k={kind}; p=")
    # a message signed with the key verifies against the printed record
    signer = Signer([load_key("example.org", "s1", str(path))])
    signer.body_text(b"hello\r\n")
    headers = [b"From: a@example.org", b"Subject: hi"]
    [field] = signer.sign(headers)
    message = b"\r\n".join([field] + headers) + b"\r\n\r\nhello\r\n"
    assert dkim.verify(message, dnsfunc=lambda name, timeout=5: row["txt"].encode())


def test_keygen_zone_form_and_refusals(tmp_path, capsys):
    assert (
        run(["dkim", "keygen", "example.org", "big", "--bits", "4096", "--dir", str(tmp_path)]) == 0
    )
    out = capsys.readouterr().out
    assert out.startswith('big._domainkey.example.org.\tIN\tTXT\t( "v=DKIM1; k=rsa; p=')
    strings = [s for s in out.split('"')[1::2]]
    assert len(strings) > 1 and all(len(s) <= 255 for s in strings)
    # never over an existing key
    assert run(["dkim", "keygen", "example.org", "big", "--dir", str(tmp_path)]) == 1
    assert "File exists" in capsys.readouterr().err
    assert (
        run(["dkim", "keygen", "example.org", "s2", "--bits", "512", "--dir", str(tmp_path)]) == 1
    )
    assert "1024 to 4096 bits" in capsys.readouterr().err
    assert not (tmp_path / "example.org.s2.pem").exists()


def test_check_asks_dns_and_reports_each_signature(tmp_path, capsys, monkeypatch):
    key = generate_key("ed25519")
    path = tmp_path / "k.pem"
    path.write_bytes(private_pem(key))
    os.chmod(path, 0o600)
    signer = Signer([load_key("example.org", "s1", str(path))])
    signer.body_text(b"hello\r\n")
    headers = [b"From: a@example.org", b"Subject: hi"]
    [field] = signer.sign(headers)
    message = tmp_path / "message.eml"
    message.write_bytes(b"\r\n".join([field] + headers) + b"\r\n\r\nhello\r\n")
    zone = {"s1._domainkey.example.org": {"TXT": [f'"{dns_record(key)}"']}}
    with DnsServer(zone) as server:
        mta_dns.set_nameservers([server.nameserver])
        try:
            assert run(["dkim", "check", str(message), "--json"]) == 0
            row = json.loads(capsys.readouterr().out)
            assert row == {
                "result": "pass",
                "domain": "example.org",
                "selector": "s1",
                "algorithm": "ed25519-sha256",
                "reason": "",
            }
            tampered = tmp_path / "tampered.eml"
            tampered.write_bytes(message.read_bytes().replace(b"hello", b"HELLO"))
            assert run(["dkim", "check", str(tampered)]) == 1
            out = capsys.readouterr().out
            assert out == "fail: d=example.org s=s1 a=ed25519-sha256 (body hash mismatch)\n"
        finally:
            mta_dns.set_nameservers(None)
    unsigned = tmp_path / "plain.eml"
    unsigned.write_bytes(b"Subject: x\r\n\r\nbody\r\n")
    assert run(["dkim", "check", str(unsigned)]) == 1
    assert "no DKIM-Signature" in capsys.readouterr().out
    assert run(["dkim", "check", str(tmp_path / "absent.eml")]) == 1
    assert "absent.eml: No such file" in capsys.readouterr().err


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file away")
def test_keygen_as_root_gives_the_key_to_mail_owner(tmp_path, capsys):
    cdir = make_instance(tmp_path, "mail_owner = nobody\n")
    keys = tmp_path / "keys"
    keys.mkdir()
    assert run(["-c", str(cdir), "dkim", "keygen", "example.org", "s1", "--dir", str(keys)]) == 0
    st = os.stat(keys / "example.org.s1.pem")
    assert st.st_uid == pwd.getpwnam("nobody").pw_uid
    assert stat.S_IMODE(st.st_mode) == 0o600
