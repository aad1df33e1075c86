"""cli.rewrite - show how an address is rewritten and resolved

SYNOPSIS
    mta rewrite [-c CONFIG_DIR] [-s local|remote] [--json] ADDRESS...
    mta rewrite [-c CONFIG_DIR] [-s local|remote] [--json] -       (addresses on stdin)

DESCRIPTION
    For each ADDRESS, runs trivial-rewrite as cleanup and qmgr would:
    the rewrite to standard form (rule set "local" by default, "remote"
    with -s remote) and the resolution of the result. One line per
    address, in the spirit of "sendmail -bv":

        joe -> joe@host.example: local, transport=local nexthop=host.example
            recipient=joe@host.example

    (on one line). Flags, when any, follow as "flags=routed,...".
    With --json each address gives one JSON object per line with the
    keys address, rewritten, transport, nexthop, recipient, class and
    flags, for scripts.

    Exit status 0; 1 with a one-line message on a configuration or
    table error; 75 (EX_TEMPFAIL) when a table lookup failed for now.

SECURITY
    Runs with the invoker's privileges and opens the tables main.cf
    names with them.

SEE ALSO
    trivial-rewrite(8), mta/trivial_rewrite
"""

from __future__ import annotations

import json
import sys

from mta.cli.common import load, make_parser
from mta.config import ConfigError
from mta.maps import MapError, MapRetry

EX_TEMPFAIL = 75  # sysexits: a lookup failed for now


def format_line(address: str, rewritten: str, res) -> str:
    """The human-readable line for one address."""
    text = (
        f"{address or '<>'} -> {rewritten or '<>'}: {res.addr_class}, "
        f"transport={res.transport} nexthop={res.nexthop} recipient={res.recipient}"
    )
    if res.flags:
        text += " flags=" + ",".join(sorted(res.flags))
    return text


def main(argv: list[str], command: str = "rewrite") -> int:
    parser = make_parser(command, "show how addresses are rewritten and resolved")
    parser.add_argument(
        "-s",
        dest="context",
        choices=("local", "remote"),
        default="local",
        help="rewrite rule set (default: local)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per address")
    parser.add_argument("addresses", nargs="+", metavar="ADDRESS", help='addresses, or "-"')
    args = parser.parse_args(argv)
    prog = f"mta {command}"
    addresses = []
    for addr in args.addresses:
        if addr == "-":
            addresses += [line.strip() for line in sys.stdin if line.strip()]
        else:
            addresses.append(addr)
    try:
        from mta.trivial_rewrite import Resolver, Rewriter

        cfg = load(args)
        rewriter, resolver = Rewriter(cfg), Resolver(cfg)
        for addr in addresses:
            if addr == "<>":
                addr = ""
            rewritten = rewriter.rewrite(addr, args.context)
            res = resolver.resolve(rewritten)
            if args.json:
                obj = {
                    "address": addr,
                    "rewritten": rewritten,
                    "transport": res.transport,
                    "nexthop": res.nexthop,
                    "recipient": res.recipient,
                    "class": res.addr_class,
                    "flags": sorted(res.flags),
                }
                sys.stdout.write(json.dumps(obj) + "\n")
            else:
                sys.stdout.write(format_line(addr, rewritten, res) + "\n")
    except (ConfigError, MapError) as exc:
        sys.stderr.write(f"{prog}: fatal: {exc}\n")
        return 1
    except MapRetry as exc:
        sys.stderr.write(f"{prog}: warning: table lookup failed: {exc}\n")
        return EX_TEMPFAIL
    return 0
