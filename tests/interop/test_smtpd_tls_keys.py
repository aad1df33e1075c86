"""smtpd's RSA, ECDSA and DSA certificates side by side (smtpd_tls_eccert_file, _dcert_file)."""

import smtplib
import ssl

import pytest

from mta.config import Config
from mta.config.validate import config_problems
from tests.support.tls import (
    SmtpdStarter,
    client_context,
    der_of,
    self_signed,
    self_signed_key,
    tls_main_cf,
)

pytestmark = pytest.mark.interop

TLS12 = {"maximum_version": ssl.TLSVersion.TLSv1_2}
ECDSA_ONLY = "ECDHE-ECDSA-AES128-GCM-SHA256"
RSA_ONLY = "ECDHE-RSA-AES128-GCM-SHA256"


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    return {
        "rsa": self_signed(d, "mx.test.example"),
        "ec": self_signed_key(d, "mx.test.example", "ec"),
        "ec2": self_signed_key(d, "other.test.example", "ec"),
        "dsa": self_signed_key(d, "mx.test.example", "dsa"),
    }


@pytest.fixture
def start(tmp_path):
    starter = SmtpdStarter(tmp_path)
    yield starter
    starter.close()


def served(port: int, ciphers: str | None = None, **bounds) -> bytes:
    """STARTTLS; the DER of the certificate the server presented."""
    ctx = client_context(**bounds)
    if ciphers:
        ctx.set_ciphers(ciphers)
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.ehlo("client.example")
        s.starttls(context=ctx)
        return s.sock.getpeercert(binary_form=True)


def both(certs, **params) -> str:
    rsa, ec = certs["rsa"], certs["ec"]
    ours = {"smtpd_tls_eccert_file": ec[0], "smtpd_tls_eckey_file": ec[1], **params}
    return tls_main_cf(rsa[0], rsa[1], **ours)


def test_an_ecdsa_client_gets_the_ecdsa_certificate_and_an_rsa_client_the_rsa_one(start, certs):
    smtpd = start(both(certs))
    assert served(smtpd.port, ECDSA_ONLY, **TLS12) == der_of(certs["ec"][0])
    assert served(smtpd.port, RSA_ONLY, **TLS12) == der_of(certs["rsa"][0])


def test_rsa_alone_refuses_an_ecdsa_only_client(start, certs):
    smtpd = start(tls_main_cf(*certs["rsa"]))
    with pytest.raises((ssl.SSLError, smtplib.SMTPServerDisconnected, ConnectionError)):
        served(smtpd.port, ECDSA_ONLY, **TLS12)


def test_an_ecdsa_certificate_alone_serves(start, certs):
    ec = certs["ec"]
    smtpd = start(tls_main_cf("", "", smtpd_tls_eccert_file=ec[0], smtpd_tls_eckey_file=ec[1]))
    assert served(smtpd.port) == der_of(ec[0])  # TLS 1.3
    assert not [p for p in config_problems(Config(str(smtpd.cdir))) if "smtpd_tls" in str(p)]


def test_the_ecdsa_key_defaults_to_the_certificate_file(start, certs, tmp_path):
    ec = certs["ec"]
    both_in_one = tmp_path / "ec.pem"
    both_in_one.write_bytes(open(ec[1], "rb").read() + open(ec[0], "rb").read())
    smtpd = start(tls_main_cf(*certs["rsa"], smtpd_tls_eccert_file=str(both_in_one)))
    assert served(smtpd.port, ECDSA_ONLY, **TLS12) == der_of(ec[0])


def test_a_dsa_certificate_loads_beside_the_others(start, certs):
    dsa = certs["dsa"]
    smtpd = start(both(certs, smtpd_tls_dcert_file=dsa[0], smtpd_tls_dkey_file=dsa[1]))
    assert not [p for p in config_problems(Config(str(smtpd.cdir))) if "smtpd_tls" in str(p)]
    assert served(smtpd.port, ECDSA_ONLY, **TLS12) == der_of(certs["ec"][0])
    assert served(smtpd.port, RSA_ONLY, **TLS12) == der_of(certs["rsa"][0])


@pytest.mark.parametrize(
    "param, value, text",
    [
        ("smtpd_tls_eckey_file", "ec2-key", "does not match"),
        ("smtpd_tls_eccert_file", "missing", "No such file"),
        ("smtpd_tls_eckey_file", "missing", "No such file"),
        ("smtpd_tls_dkey_file", "ec-key", "does not match"),
    ],
)
def test_a_bad_second_certificate_is_named_by_check_and_gets_454(
    start, certs, tmp_path, param, value, text
):
    files = {"ec2-key": certs["ec2"][1], "ec-key": certs["ec"][1], "missing": str(tmp_path / "no")}
    params = {param: files[value]}
    if param == "smtpd_tls_dkey_file":
        params["smtpd_tls_dcert_file"] = certs["dsa"][0]
    smtpd = start(both(certs, **params))
    problems = [p for p in config_problems(Config(str(smtpd.cdir))) if param in str(p)]
    assert len(problems) == 1 and not problems[0].fatal, problems
    assert files[value] in str(problems[0]) and text in str(problems[0])
    assert str(smtpd.cdir / "main.cf") in str(problems[0])
    with smtplib.SMTP("127.0.0.1", smtpd.port) as s:
        s.ehlo("client.example")
        assert s.docmd("STARTTLS") == (454, b"4.7.0 TLS not available due to local problem")
    assert f"TLS library problem: {param}: {files[value]}" in smtpd.maillog.read_text()
