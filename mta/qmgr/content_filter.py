"""qmgr.content_filter - send a message through its after-queue content filter

SYNOPSIS
    from mta.qmgr.content_filter import ContentFilter
    cf = ContentFilter(cfg)
    route = cf.route(msg)                    # None: the message has no filter
    transport, nexthop = cf.destination(route, "user@example.com")

DESCRIPTION
    cleanup records the filter of a message in its envelope attribute
    "filter": content_filter of the service that received it, or the
    FILTER action of an access table or a header or body check, which
    comes later in the file and wins. Its value is transport:nexthop,
    as Postfix's. When it is set qmgr does not resolve the recipients:
    every one goes to that transport and next hop, so that the filter
    gets the whole message, envelope unchanged, in as few deliveries as
    the transport's recipient limit allows. An empty next hop is
    default_filter_nexthop, and when that is empty too the domain of
    the recipient (Postfix 2.7 and later); an address with no domain
    gets $myhostname.

    Address probes (sendmail -bv and the verify service) are never
    filtered, as in Postfix: qmgr routes them as usual.

    A filter with no transport name (":x" or empty after the colon
    split) is an error: route() raises ValueError and qmgr defers the
    message, so that it is never delivered without its filter.

SECURITY
    The attribute comes from the operator's content_filter or tables,
    copied into the queue file by cleanup. qmgr runs as mail_owner.

SEE ALSO
    FILTER_README and access(5) of Postfix; mta/qmgr/manager.py
    (activate), mta/cleanup/cleanup.py (where the attribute is set)
"""

from __future__ import annotations

ATTR_FILTER = "filter"  # envelope attribute: transport:nexthop of the content filter


def parse_filter(value: str) -> tuple[str, str]:
    """Split "transport:nexthop" (nexthop may be empty); ValueError without a transport."""
    transport, _, nexthop = value.strip().partition(":")
    transport = transport.strip()
    if not transport:
        raise ValueError(f"bad content filter {value!r}: no transport name")
    return transport, nexthop.strip()


class ContentFilter:
    """Where the content filter of a message sends its recipients."""

    def __init__(self, cfg) -> None:
        self.default_nexthop = cfg.get("default_filter_nexthop").strip()
        self.myhostname = cfg.get("myhostname")

    def route(self, msg) -> tuple[str, str] | None:
        """(transport, nexthop) of msg's filter; None when it has none."""
        value = msg.attrs.get(ATTR_FILTER, "").strip()
        return parse_filter(value) if value else None

    def destination(self, route: tuple[str, str], address: str) -> tuple[str, str]:
        """The transport and next hop of one recipient of a filtered message."""
        transport, nexthop = route
        if not nexthop:
            nexthop = self.default_nexthop
        if not nexthop:
            at = address.rfind("@")
            nexthop = address[at + 1 :] if at >= 0 and at + 1 < len(address) else self.myhostname
        return transport, nexthop
