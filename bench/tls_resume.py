"""tls_resume - what TLS session resumption saves per handshake

SYNOPSIS
    python bench/tls_resume.py [-n 200] [--smtpd]

DESCRIPTION
    Part 1 (always): handshakes in memory (ssl.MemoryBIO, no sockets),
    client and server in this process, for TLS 1.3 and 1.2 with an
    RSA-2048 and an ECDSA P-256 certificate: a full handshake against
    a resumed one. The resumed handshake is made with a second server
    context that holds the same ticket key (mta/common/tls_ticket.py),
    as another smtpd process fed by tlsmgr would. The time is the CPU
    of both ends together; the median of n handshakes.

    Part 2 (--smtpd): the real thing on 127.0.0.1: a mail system under
    the master with two smtpd listeners (two processes) and tlsmgr; a
    client connects, says EHLO and STARTTLS and completes the
    handshake, n times without a session and n times offering the
    session it got from the other process. Wall time from connect to
    the end of the handshake, median and 90th percentile.

    Not a test: it asserts only that resumption happened.
"""

from __future__ import annotations

import argparse
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from mta.common import tls_ticket  # noqa: E402

KEY = os.urandom(tls_ticket.TICKET_KEY_SIZE)


def make_cert(d: str, kind: str) -> tuple[str, str]:
    key, crt = os.path.join(d, f"{kind}.key"), os.path.join(d, f"{kind}.crt")
    algo = ["-newkey", "rsa:2048"] if kind == "rsa" else [
        "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]  # fmt: skip
    subprocess.run(
        ["openssl", "req", "-x509", *algo, "-nodes", "-days", "2", "-subj", "/CN=mx",
         "-keyout", key, "-out", crt],
        check=True, capture_output=True,
    )  # fmt: skip
    return crt, key


def server_ctx(cert) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*cert)
    why = tls_ticket.install_ticket_key(ctx, KEY)
    assert not why, why
    return ctx


def client_ctx(version) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.maximum_version = version
    return ctx


def handshake(cctx, sctx, session=None):
    bufs = [ssl.MemoryBIO() for _ in range(4)]
    c = cctx.wrap_bio(bufs[0], bufs[1], server_hostname="mx", session=session)
    s = sctx.wrap_bio(bufs[2], bufs[3], server_side=True)
    for _ in range(10):
        done = 0
        for obj in (c, s):
            try:
                obj.do_handshake()
                done += 1
            except ssl.SSLWantReadError:
                pass
        bufs[2].write(bufs[1].read())
        bufs[0].write(bufs[3].read())
        if done == 2 and not bufs[0].pending and not bufs[2].pending:
            break
    s.write(b"x")
    bufs[0].write(bufs[3].read())
    c.read(1)
    return c


def in_memory(n: int, certs: dict) -> None:
    print(f"in memory, CPU of client and server per handshake (median of {n})")
    print(f"{'':24} {'full':>9} {'resumed':>9} {'saved':>6}")
    for vname, version in (
        ("TLSv1.3", ssl.TLSVersion.TLSv1_3),
        ("TLSv1.2", ssl.TLSVersion.TLSv1_2),
    ):
        for kind, cert in certs.items():
            cctx = client_ctx(version)
            a, b = server_ctx(cert), server_ctx(cert)  # two "processes", one key
            full, resumed = [], []
            for _ in range(n):
                t = time.process_time()
                first = handshake(cctx, a)
                full.append(time.process_time() - t)
                t = time.process_time()
                again = handshake(cctx, b, first.session)
                resumed.append(time.process_time() - t)
                assert again.session_reused
            f, r = statistics.median(full), statistics.median(resumed)
            print(f"{vname + ' ' + kind:24} {f * 1e3:7.2f}ms {r * 1e3:7.2f}ms {1 - r / f:6.0%}")


def smtpd_run(n: int, cert) -> None:
    from tests.support.running import Instance, free_port

    top = tempfile.mkdtemp(prefix="tls-resume-")
    one, two = free_port(), free_port()
    inst = Instance(
        top,
        f"127.0.0.1:{one} inet n - n - - smtpd\n127.0.0.1:{two} inet n - n - - smtpd\n"
        "tlsmgr unix - - n 1000? 1 tlsmgr\n",
        {
            "myhostname": "mx",
            "smtpd_peername_lookup": "no",
            "smtpd_tls_security_level": "may",
            "smtpd_tls_cert_file": cert[0],
            "smtpd_tls_key_file": cert[1],
        },
    )
    r = inst.mta("start")
    assert r.returncode == 0, r.stderr
    try:
        ctx = client_ctx(ssl.TLSVersion.TLSv1_3)

        def once(port, session=None):
            t = time.perf_counter()
            raw = socket.create_connection(("127.0.0.1", port), timeout=10)
            f = raw.makefile("rb")
            f.readline()
            raw.sendall(b"EHLO bench\r\n")
            while f.readline()[3:4] == b"-":
                pass
            raw.sendall(b"STARTTLS\r\n")
            f.readline()
            tls = ctx.wrap_socket(raw, server_hostname="mx", session=session)
            took = time.perf_counter() - t
            tls.sendall(b"EHLO bench\r\n")
            g = tls.makefile("rb")
            while g.readline()[3:4] == b"-":
                pass
            got = tls.session, tls.session_reused
            tls.sendall(b"QUIT\r\n")
            g.readline()
            tls.close()
            return took, got

        once(one), once(two)  # both processes up
        full, resumed = [], []
        for _ in range(n):
            took, (session, _) = once(one)
            full.append(took)
            took, (_, reused) = once(two, session)
            assert reused, "no resumption across smtpd processes"
            resumed.append(took)

        def q(xs, p):
            return sorted(xs)[int(p * (len(xs) - 1))] * 1e3

        print(f"\nsmtpd under master, {n} connections each, connect to end of handshake (TLSv1.3)")
        print(f"{'':24} {'median':>9} {'p90':>9}")
        print(f"{'full handshake':24} {q(full, 0.5):7.2f}ms {q(full, 0.9):7.2f}ms")
        print(f"{'resumed (other process)':24} {q(resumed, 0.5):7.2f}ms {q(resumed, 0.9):7.2f}ms")
    finally:
        inst.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=200)
    ap.add_argument("--smtpd", action="store_true", help="also measure smtpd under the master")
    args = ap.parse_args()
    why = tls_ticket.unavailable()
    if why:
        sys.exit(f"tls_resume: shared ticket keys are not available here: {why}")
    with tempfile.TemporaryDirectory() as d:
        certs = {"RSA-2048": make_cert(d, "rsa"), "ECDSA P-256": make_cert(d, "ec")}
        in_memory(args.n, certs)
        if args.smtpd:
            smtpd_run(args.n, certs["RSA-2048"])


if __name__ == "__main__":
    main()
