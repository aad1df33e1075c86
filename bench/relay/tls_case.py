"""tls_case - the TLS case of the relay benchmark (bench/relay/run.py --tls)

SYNOPSIS
    tls = TlsSetup(top)                         # test CA + server cert under top
    sinks = TlsSinks(count, tls, top)           # tls_sink.py on count ports
    main_cf = tls.main_cf("mta"|"postfix")      # the same TLS lines for both
    row = tls_load(port, sessions, messages, size, recipient, per_connection, tls)

DESCRIPTION
    With --tls, run.py measures both MTAs with TLS on both sides, with
    the same certificate:

    Inbound, smtpd offers STARTTLS (smtpd_tls_security_level = may,
    smtpd_tls_cert_file and smtpd_tls_key_file) and the load comes from
    tls_source.py instead of smtp-source, which has no TLS: a new
    connection and handshake per message unless --per-connection says
    otherwise, each offering the session of the last full handshake.

    Outbound, the smtp client relays with smtp_tls_security_level =
    encrypt to tls_sink.py (one process, forked workers sharing one
    set of ticket keys), and the probe's aiosmtpd sink offers STARTTLS
    too, since encrypt applies to every destination.

    mta runs with smtp_tls_connection_reuse = yes and keeps TLS
    connections open for the next delivery (its connection cache, in
    the smtp process); Postfix by default does not
    (smtp_tls_connection_reuse = no) and makes one handshake per
    delivery. --postfix-tls-reuse turns Postfix's reuse on, through its
    tlsproxy service.

    Session caching is each MTA's own: Postfix gets its tlsmgr service
    (server ticket keys) and smtp_tls_session_cache_database, as
    Debian's main.cf has it; mta gets the same, with an lmdb: table, when
    the tree has a tlsmgr service. Whether sessions were resumed shows in the counts of
    session_reused at the load client (inbound) and the sink (outbound).

SECURITY
    Test keys in the benchmark's temporary directory; everything on
    127.0.0.1.
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from loadgen import SENDER, free_port, wait_port  # noqa: E402
from tls_certs import make_certs  # noqa: E402

POSTFIX_TLSMGR = "tlsmgr unix - - n 1000? 1 tlsmgr\n"
POSTFIX_TLSPROXY = "tlsproxy unix - - n - 0 tlsproxy\n"
MTA_TLSMGR = (ROOT / "mta" / "tlsmgr").is_dir()


class TlsSetup:
    """The certificates and the TLS lines of one benchmark run."""

    def __init__(self, top: Path, postfix_reuse: bool = False) -> None:
        self.certs = make_certs(top / "certs")
        self.postfix_reuse = postfix_reuse
        os.chmod(top, 0o755)
        os.chmod(top / "certs", 0o755)

    def main_cf(self, name: str) -> str:
        lines = (
            "smtpd_tls_security_level = may\n"
            f"smtpd_tls_cert_file = {self.certs.cert}\n"
            f"smtpd_tls_key_file = {self.certs.key}\n"
            "smtp_tls_security_level = encrypt\n"
        )
        if name == "postfix":
            lines += "smtp_tls_session_cache_database = btree:${data_directory}/smtp_scache\n"
            if self.postfix_reuse:
                lines += "smtp_tls_connection_reuse = yes\n"
        else:
            lines += "smtp_tls_connection_reuse = yes\n"  # in the smtp process's cache
            if MTA_TLSMGR:  # mta keeps its client sessions in lmdb tables
                lines += "smtp_tls_session_cache_database = lmdb:${data_directory}/smtp_scache\n"
        return lines

    def master_cf(self, name: str) -> str:
        if name == "postfix":
            return POSTFIX_TLSMGR + (POSTFIX_TLSPROXY if self.postfix_reuse else "")
        return POSTFIX_TLSMGR if MTA_TLSMGR else ""  # the same line, once mta has the service

    def probe_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.certs.cert, self.certs.key)
        return ctx


class TlsSinks:
    """tls_sink.py listening on count ports of 127.0.0.1; stats() after stop()."""

    def __init__(self, count: int, tls: TlsSetup, top: Path, workers: int = 2) -> None:
        self.ports = [free_port() for _ in range(count)]
        self.tls, self.workers = tls, workers
        self.stats_file = top / "sink-stats.json"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        certs = self.tls.certs
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "tls_sink.py"), "--cert", str(certs.cert),
             "--key", str(certs.key), "--workers", str(self.workers),
             "--stats", str(self.stats_file), *(f"127.0.0.1:{p}" for p in self.ports)],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        for port in self.ports:
            wait_port(port)

    def stop(self) -> None:
        if self.proc:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)

    def stats(self) -> dict:
        try:
            return json.loads(self.stats_file.read_text())
        except (OSError, ValueError):
            return {}


def tls_load(
    port: int,
    sessions: int,
    messages: int,
    size: int,
    recipient: str,
    per_connection: int,
    tls: TlsSetup,
) -> dict:
    """Run tls_source.py against 127.0.0.1:port; its JSON result."""
    argv = [sys.executable, str(HERE / "tls_source.py"), "-s", str(sessions),
            "-m", str(messages), "-l", str(size), "-d", str(per_connection),
            "-f", SENDER, "-t", recipient, "--cafile", str(tls.certs.ca),
            f"127.0.0.1:{port}"]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
    try:
        result = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise RuntimeError(f"tls_source failed: {done.stderr.strip()[-500:]}") from None
    if done.returncode:
        raise RuntimeError(f"tls_source: not every message was accepted: {result}")
    return result


def tls_figures(row: dict, source: dict, sink: dict, per_connection: int) -> dict:
    """The TLS columns of one run: handshakes, resumption, load-side CPU.

    Inbound figures are the load client's, over the measured load only.
    Outbound ones are the sink's over the whole run (the warm-up and its
    20 messages included), so they are given per delivered message."""
    sink_messages = max(1, sink.get("messages", 0))
    out_per_msg = sink.get("handshakes", 0) / sink_messages
    return {
        "per_connection": per_connection,
        "in_handshakes_per_s": source["handshakes_per_s"],
        "in_reused": f"{source['session_reused']}/{source['handshakes']}",
        "out_handshakes_per_msg": round(out_per_msg, 3),
        "out_handshakes_per_s": round(out_per_msg * row["delivered_per_s"], 1),
        "out_reused": f"{sink.get('session_reused', 0)}/{sink.get('handshakes', 0)}",
        "source_cpu_ms_per_msg": source["cpu_ms_per_msg"],
        "sink_cpu_ms_per_msg": round(1000 * sink.get("cpu_s", 0) / sink_messages, 3),
    }
