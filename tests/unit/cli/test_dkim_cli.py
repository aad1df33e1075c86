"""mta dkim keygen: the key file, its mode, and the TXT record that verifies its signatures."""

import json
import os
import stat

import pytest

from mta.cli.main import run
from mta.common.dkim import Signer, load_key

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
