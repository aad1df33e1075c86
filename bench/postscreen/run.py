"""Time per clean SMTP connection through postscreen against a direct smtpd.

Usage:
    python bench/postscreen/run.py [--connections 200] [--new 10] [--greet-wait 1s]
                                   [--targets mta,postfix] [--json FILE]

One connection is: connect, read the whole 220 greeting, EHLO, read the 250
reply, QUIT, read 221, close; the figure is its median wall time in
milliseconds, measured from this script on 127.0.0.1. Three cases per target:

    direct     smtpd on its own inet port (no postscreen)
    pass old   postscreen, a client already in its cache: straight to smtpd
               through the pass socket
    pass new   postscreen, a client never seen (a fresh source address in
               127.1.0.0/16 each time): the "220-" teaser, the greet wait,
               the cache update, then smtpd; this includes
               postscreen_greet_wait (--greet-wait), so the overhead is
               the figure minus that wait

mta runs under its own master from a temporary directory; Postfix (when
installed and run as root) as a private instance (tests/support/postfix.py),
with the same postscreen and smtpd settings, in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from tests.support import postfix as pf  # noqa: E402
from tests.support.running import Instance, free_port, wait_for  # noqa: E402

FINAL_220 = re.compile(rb"(^|\n)220 [^\r\n]*\r\n")
FINAL_250 = re.compile(rb"(^|\n)250 [^\r\n]*\r\n")


def _read_until(sock: socket.socket, pattern: re.Pattern) -> bytes:
    data = b""
    while not pattern.search(data):
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")
        data += chunk
    return data


def one_connection(port: int, source: str) -> float:
    start = time.perf_counter()
    sock = socket.create_connection(("127.0.0.1", port), timeout=30, source_address=(source, 0))
    try:
        _read_until(sock, FINAL_220)
        sock.sendall(b"EHLO bench.example\r\n")
        _read_until(sock, FINAL_250)
        sock.sendall(b"QUIT\r\n")
        _read_until(sock, re.compile(rb"221 "))
    finally:
        sock.close()
    return time.perf_counter() - start


def new_sources(n: int, salt: int) -> list[str]:
    return [f"127.1.{salt % 250}.{i + 1}" for i in range(n)]


def measure(port: int, port_ps: int, connections: int, new: int, salt: int) -> dict:
    for _ in range(5):  # warm up: processes started, imports done
        one_connection(port, "127.0.0.1")
    one_connection(port_ps, "127.2.0.1")
    time.sleep(0.2)
    direct = [one_connection(port, "127.0.0.1") for _ in range(connections)]
    pass_new = [one_connection(port_ps, src) for src in new_sources(new, salt)]
    one_connection(port_ps, "127.2.0.1")
    pass_old = [one_connection(port_ps, "127.2.0.1") for _ in range(connections)]
    return {
        "direct_ms": statistics.median(direct) * 1000,
        "pass_old_ms": statistics.median(pass_old) * 1000,
        "pass_new_ms": statistics.median(pass_new) * 1000,
    }


SCREEN_MAIN = {
    "postscreen_greet_wait": "{wait}",
    "postscreen_access_list": "permit_mynetworks",
    "mynetworks": "10.255.0.0/16",
}


def run_mta(args) -> dict:
    top = tempfile.mkdtemp(prefix="mta-bench-postscreen-")
    port, port_ps = free_port(), free_port()
    inst = Instance(
        top,
        f"127.0.0.1:{port} inet n - n - - smtpd\n"
        f"127.0.0.1:{port_ps} inet n - n - 1 postscreen\n"
        "smtpd pass - - n - - smtpd\n"
        "dnsblog unix - - n - 0 dnsblog\n"
        "tlsproxy unix - - n - 0 tlsproxy\n"
        "anvil unix - - n - 1 anvil\n",
        {
            "myhostname": "mta.bench.example",
            "smtpd_peername_lookup": "no",
            **{k: v.format(wait=args.greet_wait) for k, v in SCREEN_MAIN.items()},
        },
    )
    r = inst.mta("start")
    assert r.returncode == 0, r.stderr
    try:
        wait_for(lambda: _listening(port) and _listening(port_ps), 15)
        return measure(port, port_ps, args.connections, args.new, 1)
    finally:
        inst.stop()


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def run_postfix(args) -> dict | None:
    if not pf.available():
        print("postfix: not installed or not root; skipped", file=sys.stderr)
        return None
    port, port_ps = free_port(), free_port()
    # the later mynetworks wins over the instance's 127.0.0.0/8
    main = "".join(f"{k} = {v.format(wait=args.greet_wait)}\n" for k, v in SCREEN_MAIN.items())
    inst = pf.PostfixInstance(port, main)
    master = (inst.etc / "master.cf").read_text()
    master += (
        f"127.0.0.1:{port_ps} inet n - n - 1 postscreen\n"
        "smtpd pass - - n - - smtpd\n"
        "dnsblog unix - - n - 0 dnsblog\n"
        "tlsproxy unix - - n - 0 tlsproxy\n"
        "anvil unix - - n - 1 anvil\n"
    )
    (inst.etc / "master.cf").write_text(master)
    inst.start()
    try:
        wait_for(lambda: _listening(port_ps), 15)
        return measure(port, port_ps, args.connections, args.new, 2)
    finally:
        inst.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--connections", type=int, default=200)
    ap.add_argument("--new", type=int, default=10)
    ap.add_argument("--greet-wait", default="1s")
    ap.add_argument("--targets", default="mta,postfix")
    ap.add_argument("--json")
    args = ap.parse_args()
    results = {}
    for target in args.targets.split(","):
        result = run_mta(args) if target == "mta" else run_postfix(args)
        if result is not None:
            results[target] = result
    print(f"{'target':8} {'direct ms':>10} {'pass old ms':>12} {'pass new ms':>12}")
    for target, r in results.items():
        print(
            f"{target:8} {r['direct_ms']:10.2f} {r['pass_old_ms']:12.2f} {r['pass_new_ms']:12.1f}"
        )
    print(f"(pass new includes postscreen_greet_wait = {args.greet_wait})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
