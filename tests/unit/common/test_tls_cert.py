"""common.tls_cert: names and fingerprints from DER certificates, checked against openssl."""

import ssl
import subprocess

import pytest

from mta.common.tls_cert import (
    CertError,
    cert_fingerprint,
    issuer_cn,
    pkey_fingerprint,
    subject_cn,
)
from tests.support.tls import issue, make_ca


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca = make_ca(d, "Ünïcode CA")
    cert, _ = issue(d, ca, "client.example")
    return cert, ssl.PEM_cert_to_DER_cert(open(cert).read())


def _openssl(*args: str, data: bytes | None = None) -> bytes:
    return subprocess.run(["openssl", *args], input=data, capture_output=True, check=True).stdout


def test_names(pair):
    _, der = pair
    assert subject_cn(der) == "client.example"
    assert issuer_cn(der) == "Ünïcode CA"


@pytest.mark.parametrize("digest", ["sha256", "sha1", "md5", "SHA512"])
def test_certificate_fingerprint_is_openssls(pair, digest):
    path, der = pair
    out = _openssl("x509", "-in", path, "-noout", "-fingerprint", f"-{digest.lower()}").decode()
    assert cert_fingerprint(der, digest) == out.strip().split("=", 1)[1]


def test_public_key_fingerprint_is_openssls(pair):
    path, der = pair
    pub = _openssl("x509", "-in", path, "-noout", "-pubkey")
    spki = _openssl("pkey", "-pubin", "-outform", "DER", data=pub)
    out = _openssl("dgst", "-sha256", "-c", data=spki).decode()
    assert pkey_fingerprint(der, "sha256") == out.strip().split("= ", 1)[1].upper()


@pytest.mark.parametrize("data", [b"", b"\x30", b"\x30\x84\xff\xff\xff\xff", b"\x04\x00", b"junk"])
def test_garbage_is_a_cert_error(data):
    with pytest.raises(CertError):
        subject_cn(data)


def test_truncated_certificate_is_a_cert_error(pair):
    _, der = pair
    for cut in (10, len(der) // 2, len(der) - 1):
        with pytest.raises(CertError):
            pkey_fingerprint(der[:cut], "sha256")


def test_unknown_digest():
    with pytest.raises(ValueError, match="unknown digest: sha7"):
        cert_fingerprint(b"x", "sha7")
