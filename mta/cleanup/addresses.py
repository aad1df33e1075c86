"""cleanup.addresses - canonical mapping, masquerading, virtual aliases, automatic BCC

SYNOPSIS
    from mta.cleanup.addresses import AddressMapper, ExpansionError
    am = AddressMapper(cfg)
    am.sender("joe")                              # envelope sender, standard form and mapped
    am.recipient("Joe@Example.COM")               # envelope recipient, before aliasing
    am.header_address("joe", "header_sender", "local")
    am.expand_virtual("list@example.com")         # ["a@x", "b@y"]; ExpansionError
    am.sender_bcc("joe@example.com"), am.recipient_bcc(addr), am.always_bcc

DESCRIPTION
    The address work of Postfix's cleanup, in its order:

      1. trivial-rewrite to standard form (the envelope always in the
         "local" rule set; headers in the context cleanup chose);
      2. canonical mapping: sender_canonical_maps (or
         recipient_canonical_maps) first, then canonical_maps, each only
         for the classes its *_classes parameter lists (envelope_sender,
         envelope_recipient, header_sender, header_recipient). Tables
         are searched in virtual(5)/canonical(5) order (addr_find). A
         result "@domain" keeps the local part; an address extension
         the table did not see is put back when "canonical" is in
         propagate_unmatched_extensions. Each result is rewritten to
         standard form again;
      3. masquerading: for the classes in masquerade_classes, a domain
         below an entry of masquerade_domains becomes that entry
         ("!entry" stops there without change); local parts listed in
         masquerade_exceptions are left alone.

    expand_virtual() is virtual_alias_maps expansion: each address is
    looked up; an answer (a list of addresses, each in standard form)
    replaces it and is expanded in turn, up to
    virtual_alias_recursion_limit levels and
    virtual_alias_expansion_limit addresses per original recipient,
    beyond which ExpansionError says the message must wait. An alias
    that names itself keeps that address. Results keep their order and
    duplicates are dropped.

    MapRetry from a table passes to the caller (cleanup defers).

SECURITY
    Addresses come from untrusted clients and messages; they are only
    used as lookup keys and in the administrator's table results.

SEE ALSO
    canonical(5), virtual(5), postconf(5) masquerade_domains, always_bcc
"""

from __future__ import annotations

import re

from mta.common.addr_find import (
    find_address_ext,
    join_extension,
    map_one_to_one,
    split_extension,
)
from mta.maps import Maps
from mta.trivial_rewrite import Rewriter
from mta.trivial_rewrite.address import split_addr

CLASS_ENV_SENDER = "envelope_sender"  # MAIL FROM address
CLASS_ENV_RECIPIENT = "envelope_recipient"  # RCPT TO addresses
CLASS_HDR_SENDER = "header_sender"  # From:, Sender:, Reply-To: ...
CLASS_HDR_RECIPIENT = "header_recipient"  # To:, Cc:, Bcc: ...

_LIST_SPLIT = re.compile(r"[\s,]+")


class ExpansionError(Exception):
    """Virtual alias expansion went past a limit; the message must wait."""


class AddressMapper:
    """The address maps and settings of one cleanup configuration."""

    def __init__(self, cfg, rewriter: Rewriter | None = None) -> None:
        self.rewriter = rewriter or Rewriter(cfg)
        self.delimiter = cfg.get("recipient_delimiter")
        propagate = {p.lower() for p in cfg.get_list("propagate_unmatched_extensions")}
        self.propagate_canonical = "canonical" in propagate
        self.propagate_virtual = "virtual" in propagate
        self.canonical = Maps.from_param(cfg, "canonical_maps")
        self.sender_canonical = Maps.from_param(cfg, "sender_canonical_maps")
        self.recipient_canonical = Maps.from_param(cfg, "recipient_canonical_maps")
        self.canonical_classes = set(cfg.get_list("canonical_classes"))
        self.sender_classes = set(cfg.get_list("sender_canonical_classes"))
        self.recipient_classes = set(cfg.get_list("recipient_canonical_classes"))
        self.masq_domains = [d.lower() for d in cfg.get_list("masquerade_domains")]
        self.masq_exceptions = {u.lower() for u in cfg.get_list("masquerade_exceptions")}
        self.masq_classes = set(cfg.get_list("masquerade_classes"))
        self.virtual = Maps.from_param(cfg, "virtual_alias_maps")
        self.expansion_limit = cfg.get_int("virtual_alias_expansion_limit")
        self.recursion_limit = cfg.get_int("virtual_alias_recursion_limit")
        self.sender_bcc_maps = Maps.from_param(cfg, "sender_bcc_maps")
        self.recipient_bcc_maps = Maps.from_param(cfg, "recipient_bcc_maps")
        bcc = cfg.get("always_bcc").strip()
        self.always_bcc = self.rewriter.rewrite(bcc) if bcc else ""

    def disable_mappings(self) -> None:
        """receive_override_options no_address_mappings: no canonical maps, virtual
        aliases, masquerading or automatic BCC (address rewriting stays)."""
        self.canonical = self.sender_canonical = self.recipient_canonical = None
        self.virtual = self.sender_bcc_maps = self.recipient_bcc_maps = None
        self.masq_domains = []
        self.always_bcc = ""

    # ---- one-to-one mapping

    def map_one(self, maps: Maps, addr: str) -> str | None:
        """The canonical(5) answer for addr, rewritten; None when there is none."""
        if not maps or not addr:
            return None
        first = map_one_to_one(maps, addr, self.delimiter, propagate=self.propagate_canonical)
        if first is None:
            return None
        return self.rewriter.rewrite(first, "local")

    def canonicalize(self, addr: str, klass: str) -> str:
        """Apply the canonical maps that apply to klass."""
        sender = klass in (CLASS_ENV_SENDER, CLASS_HDR_SENDER)
        specific = self.sender_canonical if sender else self.recipient_canonical
        specific_classes = self.sender_classes if sender else self.recipient_classes
        if specific and klass in specific_classes:
            addr = self.map_one(specific, addr) or addr
        if self.canonical and klass in self.canonical_classes:
            addr = self.map_one(self.canonical, addr) or addr
        return addr

    def masquerade(self, addr: str, klass: str) -> str:
        """Strip subdomains as masquerade_domains says, when klass is masqueraded."""
        if not self.masq_domains or klass not in self.masq_classes:
            return addr
        local, domain = split_addr(addr)
        if not domain:
            return addr
        if self.masq_exceptions:
            user, _ = split_extension(local, self.delimiter)
            if local.lower() in self.masq_exceptions or user.lower() in self.masq_exceptions:
                return addr
        low = domain.lower()
        for item in self.masq_domains:
            if item.startswith("!"):
                if low == item[1:]:
                    return addr
                continue
            if low.endswith("." + item):
                return f"{local}@{item}"
        return addr

    def map_address(self, addr: str, klass: str, context: str = "local") -> str:
        """Standard form, canonical maps and masquerading for one address."""
        if not addr:
            return addr
        addr = self.rewriter.rewrite(addr, context)
        addr = self.canonicalize(addr, klass)
        return self.masquerade(addr, klass)

    def sender(self, addr: str) -> str:
        return self.map_address(addr, CLASS_ENV_SENDER)

    def recipient(self, addr: str) -> str:
        return self.map_address(addr, CLASS_ENV_RECIPIENT)

    def header_address(self, addr: str, klass: str, context: str) -> str:
        return self.map_address(addr, klass, context)

    # ---- virtual aliases

    def _lookup_virtual(self, addr: str) -> list[str] | None:
        value, ext = find_address_ext(self.virtual, addr, self.delimiter)
        if value is None:
            return None
        local = split_addr(addr)[0]
        out = []
        for item in _LIST_SPLIT.split(value.strip()):
            if not item:
                continue
            if item.startswith("@"):
                item = local + item
            if self.propagate_virtual:
                item = join_extension(item, ext, self.delimiter)
            out.append(self.rewriter.rewrite(item, "local"))
        return out

    def expand_virtual(self, addr: str) -> list[str]:
        """The final addresses of addr after virtual alias expansion."""
        if not self.virtual:
            return [addr]
        found = [addr]
        kept: set[str] = set()  # addresses an alias mapped to themselves
        i = 0
        while i < len(found):
            for depth in range(self.recursion_limit + 1):
                current = found[i]
                if current.lower() in kept:
                    break
                if depth == self.recursion_limit:
                    raise ExpansionError(f"unreasonable virtual_alias_maps map nesting for {addr}")
                targets = self._lookup_virtual(current)
                if not targets:
                    break
                if any(t.lower() == current.lower() for t in targets):
                    kept.add(current.lower())
                found[i] = targets[0]
                found.extend(targets[1:])
                if len(found) > self.expansion_limit:
                    raise ExpansionError(
                        f"unreasonable virtual_alias_maps map expansion size for {addr}"
                    )
            i += 1
        out: list[str] = []
        seen: set[str] = set()
        for item in found:
            if item not in seen:
                seen.add(item)
                out.append(item)
        return out

    # ---- automatic BCC

    def _bcc(self, maps: Maps, addr: str) -> str | None:
        if not maps or not addr:
            return None
        value, _ = find_address_ext(maps, addr, self.delimiter)
        if not value:
            return None
        first = next((v for v in _LIST_SPLIT.split(value.strip()) if v), "")
        return self.rewriter.rewrite(first, "local") if first else None

    def sender_bcc(self, sender: str) -> str | None:
        return self._bcc(self.sender_bcc_maps, sender)

    def recipient_bcc(self, rcpt: str) -> str | None:
        return self._bcc(self.recipient_bcc_maps, rcpt)
