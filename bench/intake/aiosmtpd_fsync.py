"""The baseline: what a Python user would write to take mail in durably.

aiosmtpd's Controller-less server on one event loop; each message is written
to its own file and fsynced before the 250. Run: python aiosmtpd_fsync.py PORT DIR
"""

import asyncio
import os
import sys
import uuid

from aiosmtpd.smtp import SMTP


class FsyncHandler:
    def __init__(self, directory: str) -> None:
        self.directory = directory

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
        path = os.path.join(self.directory, uuid.uuid4().hex)
        with open(path, "wb") as f:
            f.write(envelope.mail_from.encode() + b"\n")
            f.write(",".join(envelope.rcpt_tos).encode() + b"\n")
            f.write(envelope.original_content)
            f.flush()
            os.fsync(f.fileno())
        return "250 2.0.0 Ok: queued"


async def main(port: int, directory: str) -> None:
    loop = asyncio.get_running_loop()
    handler = FsyncHandler(directory)
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="baseline.example"), "127.0.0.1", port, backlog=1024
    )
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
