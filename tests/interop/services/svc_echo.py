"""svc_echo - test service: greets with its pid, uid and name, then echoes lines

A client gets "hello PID EUID SERVICE_NAME\n", then every line back. "RAISE"
makes the handler raise (the process must survive), "QUIT" ends the session.
With the master.cf argument "single" a process serves one client at a time.
"""

import os
import sys

from mta.master.multi_server import run_multi_server


async def handle(reader, writer, ctx):
    writer.write(f"hello {os.getpid()} {os.geteuid()} {ctx.service_name}\n".encode())
    await writer.drain()
    while True:
        line = await reader.readline()
        if not line or line.strip() == b"QUIT":
            return
        if line.strip() == b"RAISE":
            raise RuntimeError("asked to fail")
        writer.write(line)
        await writer.drain()


if __name__ == "__main__":
    run_multi_server("echo", handle, max_clients=1 if "single" in sys.argv[1:] else 0)
