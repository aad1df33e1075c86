"""tls_sink - an SMTP sink that offers STARTTLS, for the TLS relay benchmark

SYNOPSIS
    python bench/relay/tls_sink.py --cert PEM --key PEM [--workers N]
        --stats FILE 127.0.0.1:PORT [127.0.0.1:PORT ...]

DESCRIPTION
    smtp-sink(1) has no STARTTLS, so the TLS case of bench/relay
    relays to this instead, whichever MTA is measured. It listens on
    every address given, answers EHLO (PIPELINING, 8BITMIME, SIZE,
    and STARTTLS until TLS is on), STARTTLS, MAIL, RCPT, DATA, RSET,
    NOOP and QUIT, accepts every message and keeps nothing.

    The listening sockets and the TLS context are made before N worker
    processes are forked (default 2), so the workers share one set of
    session ticket keys: a client may resume a TLS 1.3 session on any
    worker, as it could with a server that shares its keys.

    On SIGTERM each worker stops, and the parent writes FILE: one JSON
    object with connections, TLS handshakes, session_reused (the
    handshakes that resumed a session), messages, recipients, and the
    CPU seconds of the workers, summed. "ready" goes to standard output
    once the sockets listen (connections wait there until a worker
    takes them).

SECURITY
    Accepts mail from anyone who connects and throws it away: listen on
    127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import socket
import ssl
import sys
from pathlib import Path

EHLO_PLAIN = (
    b"250-sink.bench.example\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-STARTTLS\r\n250 SIZE 0\r\n"
)
EHLO_TLS = b"250-sink.bench.example\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 0\r\n"


class Stats:
    def __init__(self) -> None:
        self.connections = 0
        self.handshakes = 0
        self.session_reused = 0
        self.messages = 0
        self.recipients = 0


async def handle(reader, writer, ctx: ssl.SSLContext, stats: Stats) -> None:
    stats.connections += 1
    tls = False
    writer.write(b"220 sink.bench.example ESMTP\r\n")
    try:
        while True:
            line = await reader.readuntil(b"\n")
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                writer.write(EHLO_TLS if tls else EHLO_PLAIN)
            elif verb == b"MAIL" or verb == b"RSET" or verb == b"NOOP":
                writer.write(b"250 2.0.0 Ok\r\n")
            elif verb == b"RCPT":
                stats.recipients += 1
                writer.write(b"250 2.1.5 Ok\r\n")
            elif verb == b"DATA":
                writer.write(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                await reader.readuntil(b"\r\n.\r\n")
                stats.messages += 1
                writer.write(b"250 2.0.0 Ok: queued\r\n")
            elif verb == b"STAR" and not tls:
                writer.write(b"220 2.0.0 Ready to start TLS\r\n")
                await writer.start_tls(ctx)
                tls = True
                stats.handshakes += 1
                stats.session_reused += bool(writer.get_extra_info("ssl_object").session_reused)
            elif verb == b"QUIT":
                writer.write(b"221 2.0.0 Bye\r\n")
                break
            else:
                writer.write(b"502 5.5.2 Error: command not recognized\r\n")
    except (OSError, ssl.SSLError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def serve(socks: list[socket.socket], ctx: ssl.SSLContext, stats: Stats) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)

    async def client(reader, writer):
        await handle(reader, writer, ctx, stats)

    servers = [await asyncio.start_server(client, sock=s, limit=1 << 20) for s in socks]
    await stop.wait()
    for server in servers:
        server.close()


def worker(socks, ctx, out: Path) -> None:
    stats = Stats()
    asyncio.run(serve(socks, ctx, stats))
    out.write_text(json.dumps(vars(stats)))


def listen(address: str) -> socket.socket:
    host, _, port = address.rpartition(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host or "127.0.0.1", int(port)))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--stats", required=True, type=Path)
    parser.add_argument("listen", nargs="+")
    args = parser.parse_args(argv)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    socks = [listen(a) for a in args.listen]
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # taken by sigwait below
    children = []
    for i in range(max(1, args.workers)):
        pid = os.fork()
        if pid == 0:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
            try:
                worker(socks, ctx, args.stats.with_name(f"{args.stats.name}.{i}"))
            finally:
                os._exit(0)
        children.append(pid)
    print("ready", flush=True)
    signal.sigwait({signal.SIGTERM})
    for pid in children:
        os.kill(pid, signal.SIGTERM)
    for pid in children:
        os.waitpid(pid, 0)
    total: dict[str, float] = {}
    for i in range(len(children)):
        part = args.stats.with_name(f"{args.stats.name}.{i}")
        for key, value in json.loads(part.read_text()).items():
            total[key] = total.get(key, 0) + value
        part.unlink()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    total["cpu_s"] = round(usage.ru_utime + usage.ru_stime, 3)
    args.stats.write_text(json.dumps(total) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
