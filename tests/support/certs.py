"""certs - a test certificate authority and server certificates, made with openssl

SYNOPSIS
    from tests.support.certs import TestCA
    ca = TestCA(tmp_path)                                # ca.cert: the CA's PEM file
    cert, key = ca.issue("mx.example.test", "mail.example.test")
    ctx = ca.server_context("mta-sts.example.test")      # ssl.SSLContext for a server

DESCRIPTION
    Tests of verified TLS need a trust anchor of their own: TestCA makes
    an EC P-256 CA certificate, and issue() a leaf certificate for the
    given DNS names (all of them in subjectAltName, the first also the
    common name), signed by the CA, valid for two days. Files are PEM,
    written below the directory given.

SECURITY
    Test keys only; written unencrypted to a temporary directory.
"""

from __future__ import annotations

import pathlib
import ssl
import subprocess

CERT_DAYS = "2"


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30)


class TestCA:
    """A certificate authority in a directory."""

    __test__ = False  # not a pytest test class

    def __init__(self, directory: pathlib.Path, name: str = "mta test CA") -> None:
        self.dir = pathlib.Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.cert = self.dir / "ca.pem"
        self.key = self.dir / "ca.key"
        self._serial = 0
        _openssl(
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", str(self.key), "-out", str(self.cert), "-days", CERT_DAYS,
            "-subj", f"/CN={name}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        )  # fmt: skip

    def issue(self, *names: str) -> tuple[pathlib.Path, pathlib.Path]:
        """(certificate, key) files for the DNS names, signed by this CA."""
        self._serial += 1
        stem = self.dir / f"leaf{self._serial}"
        key, csr, cert, ext = (stem.with_suffix(s) for s in (".key", ".csr", ".pem", ".ext"))
        _openssl(
            "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={names[0]}",
        )  # fmt: skip
        san = ",".join(f"DNS:{n}" for n in names)
        ext.write_text(
            f"subjectAltName={san}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\n"
        )
        _openssl(
            "x509", "-req", "-in", str(csr), "-CA", str(self.cert), "-CAkey", str(self.key),
            "-set_serial", str(1000 + self._serial), "-days", CERT_DAYS, "-out", str(cert),
            "-extfile", str(ext),
        )  # fmt: skip
        return cert, key

    def server_context(self, *names: str) -> ssl.SSLContext:
        """A server-side context presenting a certificate for names."""
        cert, key = self.issue(*names)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(cert), str(key))
        return ctx
