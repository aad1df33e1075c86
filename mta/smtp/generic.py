"""smtp.generic - generic(5) address mapping when mail leaves the machine

SYNOPSIS
    from mta.smtp.generic import GenericMapper
    mapper = GenericMapper.of(cfg, lmtp=False)      # None when smtp_generic_maps is empty
    mapper.address("joe@box.localdomain")           # "joe.public@isp.example"
    lines = mapper.header_lines(lines)              # address headers rewritten

DESCRIPTION
    smtp_generic_maps (lmtp_generic_maps for the lmtp agent) rewrites
    the addresses of mail as the smtp client sends it: the envelope
    sender (MAIL FROM), the envelope recipients (RCPT TO) and the
    addresses in the message's primary header section (From:, Sender:,
    Reply-To:, To:, Cc:, their Resent- forms and the other address
    headers cleanup knows), keeping display names, comments and
    folding. The queue file is not changed.

    An address user+ext@domain is looked up as in generic(5): the
    whole address, user@domain, and when domain is $myorigin, listed
    in $mydestination, or an address of inet_interfaces or
    proxy_interfaces, also user+ext and user; then @domain. Pattern
    tables see the whole address only. A result "@otherdomain" keeps
    the local part; the result is put in standard form
    (append_at_myorigin, append_dot_mydomain); an extension the table
    did not see is kept when propagate_unmatched_extensions lists
    "generic". The null sender is never mapped.

    MapRetry from a table passes to the caller, which defers the
    delivery.

SECURITY
    Addresses and headers come from the queue file (untrusted
    content); they are only table keys, and only the address parts of
    headers are replaced. Runs in the unprivileged smtp process.

SEE ALSO
    generic(5), mta/cleanup/addresses.py (canonical(5), the same search
    on the way in), mta/common/addr_find.py
"""

from __future__ import annotations

from mta.cleanup import header_parse as H
from mta.cleanup.headers import ADDRESS_HEADERS, rewrite_address_header
from mta.common.addr_find import map_one_to_one
from mta.common.match_list import DomainList
from mta.maps import Maps
from mta.trivial_rewrite.address import split_addr
from mta.trivial_rewrite.resolve import OwnAddresses
from mta.trivial_rewrite.rewrite import Rewriter


class GenericMapper:
    """One configuration's generic maps and the settings their search needs."""

    _memo: dict = {}  # (id(cfg), lmtp) -> (cfg, GenericMapper | None)

    def __init__(self, cfg, maps: Maps) -> None:
        self.maps = maps
        self.rewriter = Rewriter(cfg)
        self.delimiter = cfg.get("recipient_delimiter")
        propagate = {p.lower() for p in cfg.get_list("propagate_unmatched_extensions")}
        self.propagate = "generic" in propagate
        self.myorigin = cfg.get("myorigin").lower().rstrip(".")
        self.mydestination = DomainList.from_param(cfg, "mydestination")
        self.own = OwnAddresses(cfg)
        self.token_limit = cfg.get_int("header_address_token_limit")

    @classmethod
    def of(cls, cfg, lmtp: bool = False) -> GenericMapper | None:
        """The mapper of cfg for smtp (or lmtp), or None when no table is set."""
        memo = cls._memo.get((id(cfg), lmtp))
        if memo is not None and memo[0] is cfg:
            return memo[1]
        maps = Maps.from_param(cfg, "lmtp_generic_maps" if lmtp else "smtp_generic_maps")
        mapper = cls(cfg, maps) if maps else None
        cls._memo[(id(cfg), lmtp)] = (cfg, mapper)
        return mapper

    def _local_site(self, domain: str) -> bool:
        name = domain.lower().rstrip(".")
        if name == self.myorigin or self.mydestination.match(name):
            return True
        if name.startswith("[") and name.endswith("]"):
            text = name[1:-1]
            return (text[5:] if text.startswith("ipv6:") else text) in self.own
        return False

    def address(self, addr: str) -> str:
        """addr as generic(5) maps it; addr itself when no table has it."""
        if not addr:
            return addr
        _, domain = split_addr(addr)
        local = domain is not None and self._local_site(domain)
        first = map_one_to_one(
            self.maps, addr, self.delimiter, propagate=self.propagate, local=local
        )
        if first is None:
            return addr
        return self.rewriter.rewrite(first, "local")

    def header_lines(self, lines: list[bytes]) -> list[bytes]:
        """Message lines (no line ends) with the primary address headers mapped."""
        end = next((i for i, line in enumerate(lines) if line in (b"", b"\r")), len(lines))
        out: list[bytes] = []
        i = 0
        while i < end:
            j = i + 1
            while j < end and lines[j][:1] in (b" ", b"\t"):
                j += 1
            raw = b"\n".join(lines[i:j])
            namelen = H.is_header(raw)
            hid = H.header_id(raw[:namelen].lower()) if namelen else 0
            if hid in ADDRESS_HEADERS:
                raw = rewrite_address_header(raw, self.address, self.token_limit)
            out += raw.split(b"\n")
            i = j
        return out + lines[end:]
