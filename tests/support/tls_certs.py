"""tls_certs - a test certificate authority and server certificates, made with cryptography

SYNOPSIS
    from tests.support.tls_certs import TestCA
    ca = TestCA(tmp_dir, "Test CA")
    ca.cafile                                       # PEM file of the CA certificate
    cert, key = ca.issue("mx", ["mx.example.test"])  # PEM files (SAN dNSNames)
    cert, key = ca.issue("old", ["mx.example.test"], expired=True)
    ca.context(cert, key)                            # ssl context of a server with it
    fingerprint(cert, "sha256"), pubkey_fingerprint(cert, "sha256")

DESCRIPTION
    EC P-256 keys; certificates valid from an hour ago for two days
    (expired: ended a day ago); cn names the subject when given, else
    the first DNS name. For tests only.
"""

from __future__ import annotations

import datetime
import ssl
import subprocess
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(path: Path, key) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


class TestCA:
    __test__ = False  # not a pytest class

    def __init__(self, directory: Path, cn: str = "Test CA") -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(_name(cn))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )
        slug = cn.replace(" ", "_")
        self.cafile = self.dir / f"{slug}.pem"
        self.cafile.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(
        self,
        name: str,
        dns_names: list[str],
        *,
        cn: str = "",
        expired: bool = False,
        client: bool = False,
    ) -> tuple[Path, Path]:
        """(certificate file, key file) for dns_names, signed by this CA."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        start = now - datetime.timedelta(days=3 if expired else 0, hours=1)
        end = now - datetime.timedelta(days=1) if expired else now + datetime.timedelta(days=2)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(cn or (dns_names[0] if dns_names else name)))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        if dns_names:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names]), critical=False
            )
        cert = builder.sign(self.key, hashes.SHA256())
        cert_path, key_path = self.dir / f"{name}.crt", self.dir / f"{name}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key_path, key)
        return cert_path, key_path

    @staticmethod
    def context(cert: Path, key: Path, client_ca: Path | None = None) -> ssl.SSLContext:
        """A server context presenting cert (asking for a client certificate from client_ca)."""
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(cert), str(key))
        if client_ca is not None:
            ctx.load_verify_locations(cafile=str(client_ca))
            ctx.verify_mode = ssl.CERT_OPTIONAL
        return ctx


def fingerprint(cert: Path, digest: str = "sha256") -> str:
    """The certificate's fingerprint as openssl prints it (upper-case hex pairs with colons)."""
    out = subprocess.run(
        ["openssl", "x509", "-noout", "-fingerprint", f"-{digest}", "-in", str(cert)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.strip().split("=", 1)[1]


def pubkey_fingerprint(cert: Path, digest: str = "sha256") -> str:
    """The fingerprint of the certificate's public key (DER SubjectPublicKeyInfo), by openssl."""
    pem = subprocess.run(
        ["openssl", "x509", "-noout", "-pubkey", "-in", str(cert)],
        capture_output=True,
        check=True,
    ).stdout
    der = subprocess.run(
        ["openssl", "pkey", "-pubin", "-outform", "DER"], input=pem, capture_output=True, check=True
    ).stdout
    out = subprocess.run(
        ["openssl", "dgst", f"-{digest}", "-c"], input=der, capture_output=True, check=True
    ).stdout.decode()
    return out.strip().split("= ", 1)[1].upper()
