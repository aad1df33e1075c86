"""dkim_case - the DKIM case of the relay benchmark (bench/relay/run.py --dkim)

SYNOPSIS
    dkim = DkimSetup(top, "rsa")          # one key for both MTAs, under top
    dkim.start("postfix")                 # OpenDKIM as the target's milter
    main_cf = dkim.main_cf("mta"|"mta-milter"|"postfix")
    dkim.pids("postfix")                  # OpenDKIM's, counted in the target's CPU
    dkim.stop()

DESCRIPTION
    Every message from the load generator's domain (load.example) is
    signed with one 2048-bit RSA key (or Ed25519 with "ed25519"),
    relaxed/relaxed:

    mta signs in cleanup (dkim_key_table, dkim_signing_table);

    Postfix hands every message to Debian's OpenDKIM (package opendkim)
    as a milter on 127.0.0.1 (smtpd_milters, milter_default_action =
    tempfail), with the same key in OpenDKIM's KeyTable and SigningTable.
    OpenDKIM's CPU is added to Postfix's, as it is part of the set-up.

    mta-milter is mta with the very same OpenDKIM milter set-up
    (smtpd_milters, as Postfix) instead of its own signing: the milter
    protocol against Postfix's, same peer, same key.
    OpenDKIM runs with RequireSafeKeys no: the key lives under /tmp, a
    directory others can write, which it never calls safe.

    The probe messages carry the signature like the rest; the probe sink
    counts the signed ones, so a run where signing did not happen shows.

SECURITY
    A throw-away key in the benchmark's temporary directory; 127.0.0.1 only.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from loadgen import free_port  # noqa: E402

from mta.common.dkim import generate_key, private_pem  # noqa: E402

DOMAIN = "load.example"  # smtp-source's and the probe's sender domain
SELECTOR = "bench"
MILTER_TARGETS = ("postfix", "mta-milter")  # these sign through OpenDKIM as a milter


class DkimSetup:
    def __init__(self, top: Path, kind: str = "rsa") -> None:
        self.dir = top / "dkim"
        self.dir.mkdir()
        self.kind = kind
        key = self.dir / "key.pem"
        key.write_bytes(private_pem(generate_key(kind, 2048)))
        os.chmod(key, 0o600)
        (self.dir / "keytable").write_text(f"bench {DOMAIN}:{SELECTOR}:{key}\n")
        (self.dir / "signing.mta").write_text(f"@{DOMAIN} bench\n")
        (self.dir / "signing.opendkim").write_text(f"*@{DOMAIN} bench\n")
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @staticmethod
    def available() -> bool:
        return shutil.which("opendkim") is not None

    @staticmethod
    def uses_milter(name: str) -> bool:
        return name in MILTER_TARGETS

    def main_cf(self, name: str) -> str:
        if not self.uses_milter(name):
            return (
                f"dkim_key_table = texthash:{self.dir / 'keytable'}\n"
                f"dkim_signing_table = texthash:{self.dir / 'signing.mta'}\n"
            )
        return (
            f"smtpd_milters = inet:127.0.0.1:{self.port}\n"
            "non_smtpd_milters = $smtpd_milters\nmilter_default_action = tempfail\n"
        )

    def start(self, name: str) -> None:
        if not self.uses_milter(name):
            return
        algorithm = "rsa-sha256" if self.kind == "rsa" else "ed25519-sha256"
        conf = self.dir / "opendkim.conf"
        conf.write_text(
            "Syslog no\nMode s\nCanonicalization relaxed/relaxed\n"
            f"SignatureAlgorithm {algorithm}\n"
            f"KeyTable file:{self.dir / 'keytable'}\n"
            f"SigningTable refile:{self.dir / 'signing.opendkim'}\n"
            f"Socket inet:{self.port}@127.0.0.1\n"
            f"PidFile {self.dir / 'opendkim.pid'}\n"
            "OversignHeaders From\nBackground no\nRequireSafeKeys no\n"
        )
        self.proc = subprocess.Popen(
            ["opendkim", "-f", "-x", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("opendkim did not start")

    def pids(self, name: str) -> list[int]:
        return [self.proc.pid] if self.uses_milter(name) and self.proc is not None else []

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None
