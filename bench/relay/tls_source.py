"""tls_source - an SMTP load generator that speaks STARTTLS, for the TLS relay benchmark

SYNOPSIS
    python bench/relay/tls_source.py [-s SESSIONS] [-m MESSAGES] [-l SIZE]
        [-d PER_CONNECTION] [--no-resume] [--plain] [-f SENDER] [-t RCPT]
        [--cafile PEM] HOST:PORT

DESCRIPTION
    smtp-source(1) cannot do TLS, so this does its job for the TLS case
    of bench/relay: SESSIONS concurrent connections share MESSAGES
    messages of SIZE bytes (default 4096) with one recipient. Each
    connection reads the greeting, says EHLO, STARTTLS, EHLO again, then
    sends MAIL, RCPT, DATA and the message, one command at a time
    (smtp-source does not pipeline either), and QUIT after
    PER_CONNECTION messages (-d; default 1, a new connection and
    handshake per message). --plain leaves out STARTTLS, for comparison.

    Like a mail client with a session cache, the connections offer the
    server the TLS session of the last full handshake (a TLS 1.3 ticket,
    or a TLS 1.2 session id); --no-resume turns that off. The session is
    copied out after full handshakes only: each copy costs about a
    fifth of a handshake in OpenSSL 3.0. The
    server's certificate is checked against --cafile when one is given,
    and not checked otherwise.

    At the end one JSON line goes to standard output: messages
    accepted, connections, TLS handshakes and how many of them resumed
    a session (session_reused), errors, the elapsed time, messages and
    handshakes per second, and this process's own CPU time (user +
    system) in total and per message, so a run can tell whether the
    load generator was the bottleneck. The exit status is 1 when any
    message was not accepted.

    The work per message is kept small: one asyncio event loop,
    replies read with one readuntil() per line, the message text built
    once.

SECURITY
    A benchmark tool: it connects where it is told and sends test mail.
    Without --cafile it does not authenticate the server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import ssl
import sys
import time


class ResumingContext(ssl.SSLContext):
    """A client context that offers the last session it was given.

    asyncio's start_tls() has no session argument; it calls wrap_bio(),
    so the session is put in there."""

    last_session: ssl.SSLSession | None = None
    resume = True

    def wrap_bio(self, incoming, outgoing, server_side=False, server_hostname=None, session=None):
        if session is None and self.resume:
            session = self.last_session
        return super().wrap_bio(incoming, outgoing, server_side, server_hostname, session)


def client_context(cafile: str | None, resume: bool) -> ResumingContext:
    ctx = ResumingContext(ssl.PROTOCOL_TLS_CLIENT)
    if cafile:
        ctx.load_verify_locations(cafile)
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    ctx.resume = resume
    return ctx


class Counts:
    def __init__(self) -> None:
        self.messages = 0
        self.connections = 0
        self.handshakes = 0
        self.reused = 0
        self.errors = 0
        self.first_error = ""


class SmtpError(Exception):
    pass


def message_text(size: int, sender: str, rcpt: str) -> bytes:
    head = f"From: <{sender}>\r\nTo: <{rcpt}>\r\nSubject: TLS bench\r\n\r\n".encode()
    line = b"x" * 76 + b"\r\n"
    body = line * max(1, (size - len(head)) // len(line))
    return head + body + b".\r\n"


async def reply(reader: asyncio.StreamReader, want: int) -> bytes:
    """One (possibly multi-line) reply; SmtpError unless its code is want."""
    lines = []
    while True:
        line = await reader.readuntil(b"\n")
        lines.append(line)
        if len(line) < 4 or line[3:4] != b"-":
            break
    if not lines[0][:3].isdigit() or int(lines[0][:3]) != want:
        raise SmtpError(b"".join(lines).decode("ascii", "replace").strip())
    return b"".join(lines)


async def command(reader, writer, line: bytes, want: int) -> bytes:
    writer.write(line)
    return await reply(reader, want)


async def session(args, ctx: ResumingContext, todo: list[int], counts: Counts, text: bytes) -> None:
    host, port = args.server
    mail = f"MAIL FROM:<{args.sender}>\r\n".encode()
    rcpt = f"RCPT TO:<{args.rcpt}>\r\n".encode()
    while todo[0] > 0:
        n = min(args.per_connection, todo[0])
        todo[0] -= n
        writer = None
        try:
            reader, writer = await asyncio.open_connection(host, port, limit=1 << 16)
            counts.connections += 1
            await reply(reader, 220)
            ehlo = await command(reader, writer, b"EHLO tls-source.bench.example\r\n", 250)
            if not args.plain:
                if b"STARTTLS" not in ehlo.upper():
                    raise SmtpError("STARTTLS not offered")
                await command(reader, writer, b"STARTTLS\r\n", 220)
                await writer.start_tls(ctx, server_hostname=host)
                ssl_object = writer.get_extra_info("ssl_object")
                counts.handshakes += 1
                reused = ssl_object.session_reused
                counts.reused += reused
                await command(reader, writer, b"EHLO tls-source.bench.example\r\n", 250)
            for _ in range(n):
                await command(reader, writer, mail, 250)
                await command(reader, writer, rcpt, 250)
                await command(reader, writer, b"DATA\r\n", 354)
                await command(reader, writer, text, 250)
                counts.messages += 1
            await command(reader, writer, b"QUIT\r\n", 221)
            if ctx.resume and not args.plain and (ctx.last_session is None or not reused):
                # a TLS 1.3 ticket arrives after the handshake, so it is
                # taken now; only after a full handshake (copies are dear)
                ctx.last_session = ssl_object.session
        except (OSError, SmtpError, ssl.SSLError, asyncio.IncompleteReadError) as exc:
            counts.errors += 1
            counts.first_error = counts.first_error or f"{type(exc).__name__}: {exc}"
            if counts.errors > 50:
                todo[0] = 0
        finally:
            if writer is not None:
                writer.close()


async def run(args) -> dict:
    ctx = client_context(args.cafile, not args.no_resume)
    counts = Counts()
    todo = [args.messages]
    text = message_text(args.size, args.sender, args.rcpt)
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    await asyncio.gather(*(session(args, ctx, todo, counts, text) for _ in range(args.sessions)))
    elapsed = time.perf_counter() - start
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = cpu1.ru_utime - cpu0.ru_utime + cpu1.ru_stime - cpu0.ru_stime
    return {
        "messages": counts.messages,
        "connections": counts.connections,
        "handshakes": counts.handshakes,
        "session_reused": counts.reused,
        "errors": counts.errors,
        "first_error": counts.first_error,
        "elapsed_s": round(elapsed, 3),
        "messages_per_s": round(counts.messages / elapsed, 1),
        "handshakes_per_s": round(counts.handshakes / elapsed, 1),
        "cpu_s": round(cpu, 3),
        "cpu_ms_per_msg": round(1000 * cpu / max(1, counts.messages), 3),
    }


def server_address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-s", dest="sessions", type=int, default=10)
    parser.add_argument("-m", dest="messages", type=int, default=100)
    parser.add_argument("-l", dest="size", type=int, default=4096)
    parser.add_argument("-d", dest="per_connection", type=int, default=1)
    parser.add_argument("-f", dest="sender", default="bench@load.example")
    parser.add_argument("-t", dest="rcpt", default="sink@bench.example")
    parser.add_argument("--cafile")
    parser.add_argument("--no-resume", action="store_true")
    parser.add_argument("--plain", action="store_true")
    parser.add_argument("server", type=server_address, metavar="HOST:PORT")
    args = parser.parse_args(argv)
    args.per_connection = max(1, args.per_connection)
    result = asyncio.run(run(args))
    print(json.dumps(result), flush=True)
    return 0 if result["messages"] == args.messages else 1


if __name__ == "__main__":
    sys.exit(main())
