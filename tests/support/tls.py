"""TLS material for tests: certificates made with openssl, client contexts, an smtpd fixture."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

from tests.support.instance import SmtpdThread, make_instance


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def self_signed(directory: Path, name: str) -> tuple[str, str]:
    """A self-signed RSA certificate for CN=name: (cert path, key path)."""
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(cert))  # fmt: skip
    return str(cert), str(key)


def self_signed_key(directory: Path, name: str, alg: str) -> tuple[str, str]:
    """A self-signed certificate for CN=name with an "ec" (P-256) or "dsa" key: (cert, key)."""
    cert, key = directory / f"{name}.{alg}.crt", directory / f"{name}.{alg}.key"
    if alg == "ec":
        opts = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
    else:
        params = directory / f"{name}.dsaparam"
        openssl("genpkey", "-genparam", "-algorithm", "DSA", "-pkeyopt", "dsa_paramgen_bits:2048",
                "-out", str(params))  # fmt: skip
        opts = ["-newkey", f"dsa:{params}"]
    openssl("req", "-x509", *opts, "-nodes", "-days", "2", "-subj", f"/CN={name}",
            "-keyout", str(key), "-out", str(cert))  # fmt: skip
    return str(cert), str(key)


def der_of(cert: str) -> bytes:
    """The DER of the PEM certificate file cert."""
    return ssl.PEM_cert_to_DER_cert(Path(cert).read_text())


def make_ca(directory: Path, name: str = "Test CA") -> tuple[str, str]:
    """A certificate authority: (cert path, key path)."""
    cert, key = directory / "ca.crt", directory / "ca.key"
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-utf8",
            "-subj", f"/CN={name}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout", str(key), "-out", str(cert))  # fmt: skip
    return str(cert), str(key)


def issue(directory: Path, ca: tuple[str, str], name: str) -> tuple[str, str]:
    """A certificate for CN=name signed by ca: (cert path, key path)."""
    cert, key, csr = (directory / f"{name}.{x}" for x in ("crt", "key", "csr"))
    openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
            "-keyout", str(key), "-out", str(csr))  # fmt: skip
    openssl("x509", "-req", "-in", str(csr), "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
            "-days", "2", "-out", str(cert))  # fmt: skip
    return str(cert), str(key)


def client_context(**bounds) -> ssl.SSLContext:
    """A client context that does not verify the server; bounds: minimum/maximum_version."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    for name, value in bounds.items():
        setattr(ctx, name, value)
    return ctx


def tls_main_cf(cert: str, key: str, level: str = "may", **params: str) -> str:
    """main.cf lines for smtpd TLS at level with cert and key, loglevel 1, and params."""
    lines = {
        "smtpd_tls_security_level": level,
        "smtpd_tls_cert_file": cert,
        "smtpd_tls_key_file": key,
        "smtpd_tls_loglevel": "1",
        **params,
    }
    return "".join(f"{k} = {v}\n" for k, v in lines.items())


class SmtpdStarter:
    """start(main_cf) -> an in-process smtpd with .cdir and .maillog; close() stops them all."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.servers: list[SmtpdThread] = []

    def __call__(self, main_cf: str) -> SmtpdThread:
        cdir = make_instance(self.tmp_path, main_cf)
        server = SmtpdThread(cdir)
        server.cdir = cdir
        server.maillog = self.tmp_path / "maillog"
        self.servers.append(server)
        return server

    def close(self) -> None:
        for server in self.servers:
            server.close()


def two_tls_smtpds(tmp_path: Path, cert: tuple[str, str], services: str, **main_cf: str):
    """A real instance with two smtpd listeners (two processes) offering STARTTLS with
    cert, plus the master.cf lines services, started: (instance, port one, port two)."""
    from tests.support.running import Instance, free_port

    one, two = free_port(), free_port()
    inst = Instance(
        tmp_path,
        f"127.0.0.1:{one} inet n - n - - smtpd\n127.0.0.1:{two} inet n - n - - smtpd\n{services}",
        {
            "myhostname": "mx.test.example",
            "mynetworks": "127.0.0.1/32",
            "smtpd_peername_lookup": "no",
            "smtpd_tls_security_level": "may",
            "smtpd_tls_cert_file": cert[0],
            "smtpd_tls_key_file": cert[1],
            "smtpd_tls_loglevel": "1",
            **main_cf,
        },
    )
    r = inst.mta("start")
    assert r.returncode == 0, r.stderr
    return inst, one, two
