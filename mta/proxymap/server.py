"""proxymap.server - answer lookup requests for proxy: tables

SYNOPSIS
    from mta.proxymap.server import handle_client, approved_tables
    server = await asyncio.start_unix_server(
        lambda r, w: handle_client(r, w, ctx), path=sock_path)

DESCRIPTION
    handle_client() serves one connection until the client closes it.
    Each request is one attr_proto message:

        {"request": "open",   "table": "TYPE:NAME", "flags": F}
        {"request": "lookup", "table": "TYPE:NAME", "flags": F, "key": K}

    and each gets one reply {"status": S} or {"status": S, "value": V}:
    0 found, 1 not found (or "open" succeeded: 0), 2 temporary failure
    (the table could not be opened or a lookup failed), 3 the table is
    not approved, 4 a malformed request. F holds "fold" when the client
    wants fixed-string keys folded to lower case (the usual case).

    A table is approved when it is listed in proxy_read_maps after $name
    expansion, compared with any "proxy:" prefix removed, as Postfix
    does; items of that list that are no type:name (domain names from
    $mydestination and the like) are ignored. Tables are opened with
    open_map(), so each is opened once per process.

    Bytes that are not a well-formed message end the connection; the
    service itself carries on.

SECURITY
    Clients are other mta processes on private/proxymap, but the keys
    they pass may come from untrusted mail. Only approved tables are
    ever opened, whatever name a client sends.

SEE ALSO
    proxymap(8), mta/maps/dict_proxy.py (the client side)
"""

from __future__ import annotations

import asyncio

from mta import log
from mta.common.attr_proto import serve_requests
from mta.maps import MapError, MapRetry, open_map, split_spec

PROXY_STAT_FOUND = "0"  # key found, value follows
PROXY_STAT_NOKEY = "1"  # key not found
PROXY_STAT_RETRY = "2"  # temporary failure, try again later
PROXY_STAT_DENY = "3"  # table not listed in proxy_read_maps
PROXY_STAT_BAD = "4"  # malformed request
PROXY_PREFIX = "proxy:"  # stripped from proxy_read_maps items before comparing


def approved_tables(cfg) -> set[str]:
    """The "type:name" tables proxy_read_maps allows, prefixes removed."""
    out: set[str] = set()
    for item in cfg.get_list("proxy_read_maps"):
        while item.startswith(PROXY_PREFIX):
            item = item[len(PROXY_PREFIX) :]
        if ":" not in item or item.startswith(("/", "[")) or not item.split(":", 1)[0]:
            continue
        kind, name = split_spec(item, cfg)
        out.add(f"{kind}:{name}")
    return out


def _answer(req: dict[str, str], cfg, approved: set[str]) -> dict[str, str]:
    request = req.get("request")
    table_name = req.get("table", "")
    if request not in ("open", "lookup") or ":" not in table_name:
        return {"status": PROXY_STAT_BAD}
    if request == "lookup" and "key" not in req:
        return {"status": PROXY_STAT_BAD}
    kind, name = split_spec(table_name, cfg)
    if f"{kind}:{name}" not in approved or kind == "proxy":
        log.warning("request for unapproved table: %s", table_name)
        return {"status": PROXY_STAT_DENY}
    fold = "fold" in req.get("flags", "").replace(",", " ").split()
    try:
        table = open_map(f"{kind}:{name}", cfg, fold=fold)
        if request == "open":
            return {"status": PROXY_STAT_FOUND}
        value = table.lookup(req["key"])
    except MapRetry as exc:
        log.warning("%s", exc)
        return {"status": PROXY_STAT_RETRY}
    except MapError as exc:
        log.warning("%s", exc)
        return {"status": PROXY_STAT_RETRY}
    if value is None:
        return {"status": PROXY_STAT_NOKEY}
    return {"status": PROXY_STAT_FOUND, "value": value}


async def handle_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ctx) -> None:
    """Serve lookup requests on one connection until it closes or misbehaves."""
    cfg = ctx.cfg
    approved = approved_tables(cfg)
    await serve_requests(reader, writer, lambda req: _answer(req, cfg, approved), "request")
