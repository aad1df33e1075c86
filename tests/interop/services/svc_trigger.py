"""svc_trigger - test trigger service: appends "PID DATA" lines to the file in argv."""

import os

from mta.master.trigger_server import run_trigger_server


def handle(data, ctx):
    with open(ctx.args[0], "a") as f:
        f.write(f"{os.getpid()} {data.decode(errors='replace')}\n")


if __name__ == "__main__":
    run_trigger_server("trigger", handle)
