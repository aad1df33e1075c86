"""certs - certificates made by tests: a CA, servers it signs, self-signed servers

SYNOPSIS
    from tests.support.certs import make_ca, make_cert, tlsa, server_context
    ca = make_ca("Test CA")
    leaf = make_cert("mx.example.com", issuer=ca)          # signed by ca
    self_signed = make_cert("mx.example.com")
    leaf.der, leaf.pem, leaf.key_pem, leaf.cert
    tlsa(leaf, usage=3, selector=1, mtype=1)               # "3 1 1 <hex>"
    ctx = server_context(leaf, tmp_path, chain=[ca])       # ssl server context

DESCRIPTION
    EC P-256 keys (RSA with rsa=True), SHA-256 signatures; the names go
    in the subjectAltName and the common name. not_before/not_after
    default to a day ago and a day ahead. tlsa() gives the record text
    for a certificate in master-file form, as the test DNS server serves it.

SECURITY
    Test keys only.
"""

from __future__ import annotations

import datetime
import hashlib
import ssl
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric import rsa as rsa_keys
from cryptography.x509.oid import NameOID


@dataclass
class Made:
    cert: x509.Certificate
    key: object

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @property
    def spki(self) -> bytes:
        return self.cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def _key(rsa: bool):
    if rsa:
        return rsa_keys.generate_private_key(65537, 2048)
    return ec.generate_private_key(ec.SECP256R1())


def _build(subject: str, names, issuer: Made | None, ca: bool, rsa: bool, days=(-1, 1)) -> Made:
    key = _key(rsa)
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.cert.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + datetime.timedelta(days=days[0]))
        .not_valid_after(now + datetime.timedelta(days=days[1]))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
        )
    signer = issuer.key if issuer else key
    return Made(builder.sign(signer, hashes.SHA256()), key)


def make_ca(subject: str = "Test CA", issuer: Made | None = None, rsa: bool = False) -> Made:
    return _build(subject, [], issuer, True, rsa)


def make_cert(
    *names: str,
    issuer: Made | None = None,
    rsa: bool = False,
    days: tuple[int, int] = (-1, 1),
) -> Made:
    return _build(names[0] if names else "server", list(names), issuer, False, rsa, days)


def tlsa(made: Made, usage: int = 3, selector: int = 1, mtype: int = 1) -> str:
    data = made.der if selector == 0 else made.spki
    if mtype == 1:
        data = hashlib.sha256(data).digest()
    elif mtype == 2:
        data = hashlib.sha512(data).digest()
    return f"{usage} {selector} {mtype} {data.hex()}"


def write_pair(made: Made, directory, name: str, chain=()) -> tuple[str, str]:
    """Write NAME.pem (the certificate, then chain) and NAME.key; their paths."""
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
    cert_path.write_bytes(made.pem + b"".join(c.pem for c in chain))
    key_path.write_bytes(made.key_pem)
    return str(cert_path), str(key_path)


def server_context(made: Made, directory, chain=(), name: str = "server") -> ssl.SSLContext:
    cert_path, key_path = write_pair(made, directory, name, chain)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert_path, key_path)
    return ctx
