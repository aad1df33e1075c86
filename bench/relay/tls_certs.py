"""tls_certs - a throw-away test CA and server certificate for the TLS benchmarks

SYNOPSIS
    from tls_certs import make_certs
    certs = make_certs(directory)      # certs.ca, certs.cert, certs.key (paths)

DESCRIPTION
    make_certs() runs openssl(1) to make, under directory, a test CA
    (ca.pem, ca.key) and a server certificate signed by it for
    localhost and 127.0.0.1 (server.pem, server.key; EC P-256 keys, the
    kind most mail servers use now). Both MTAs of one benchmark run get
    the same files, so their handshakes cost the same.

SECURITY
    The keys are for the benchmark only and live in the benchmark's
    temporary directory; the key files are mode 0600 and readable to
    Postfix's smtpd only because it reads them as root before dropping
    privileges, as it does in production.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Certs:
    ca: Path
    cert: Path
    key: Path


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def make_certs(directory: Path) -> Certs:
    """A test CA and a server certificate signed by it, under directory."""
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key = directory / "ca.pem", directory / "ca.key"
    cert, key, csr = directory / "server.pem", directory / "server.key", directory / "server.csr"
    ext = directory / "server.ext"
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl("req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(ca),
             "-days", "2", "-subj", "/CN=mta bench test CA")  # fmt: skip
    _openssl("req", "-new", *ec, "-keyout", str(key), "-out", str(csr),
             "-subj", "/CN=localhost")  # fmt: skip
    ext.write_text(
        "basicConstraints = CA:FALSE\nkeyUsage = digitalSignature\n"
        "extendedKeyUsage = serverAuth\nsubjectAltName = DNS:localhost, IP:127.0.0.1\n"
    )
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
             "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(cert))  # fmt: skip
    key.chmod(0o600)
    ca_key.chmod(0o600)
    return Certs(ca, cert, key)
