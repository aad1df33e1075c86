"""trivial_rewrite.rewrite - rewrite an address to user@fully.qualified.domain

SYNOPSIS
    from mta.trivial_rewrite.rewrite import Rewriter
    rw = Rewriter(cfg)
    rw.rewrite("joe")                        # "joe@$myorigin"
    rw.rewrite("site!joe")                   # "joe@site"       (swap_bangpath)
    rw.rewrite("joe%site")                   # "joe@site"       (allow_percent_hack)
    rw.rewrite("joe", "remote")              # "joe@$remote_header_rewrite_domain" or "joe"

DESCRIPTION
    The "standard form" step that cleanup applies before any table
    lookup, in the order Postfix's trivial-rewrite applies it:

      1. An empty address stays empty.
      2. A source route ("@hosta,@hostb:user@site") is dropped.
      3. A trailing dot of the domain is dropped.
      4. An address without "@": with swap_bangpath "site!rest" becomes
         "rest@site" (split at the first "!"); otherwise with
         allow_percent_hack "user%site" becomes "user@site" (the last
         "%"). Characters inside quotes never count.
      5. Still no domain: in the "local" context append_at_myorigin adds
         "@$myorigin"; in the "remote" context "@" plus
         remote_header_rewrite_domain is added when that is set, and the
         address is left alone when it is empty.
      6. A domain without a dot: append_dot_mydomain adds ".$mydomain"
         ("local") or "." plus remote_header_rewrite_domain ("remote"),
         except for address literals and "localhost".

    The local part keeps its quoting. Results are cached per process in
    a bounded dict (REWRITE_CACHE_SIZE entries); Rewriter objects are
    safe to share between threads (a lost cache entry is harmless).

SECURITY
    Addresses are untrusted text; they are only split and joined.

SEE ALSO
    postconf(5): append_at_myorigin, append_dot_mydomain, swap_bangpath,
    allow_percent_hack, remote_header_rewrite_domain
"""

from __future__ import annotations

from mta.trivial_rewrite.address import split_addr

REWRITE_CONTEXTS = ("local", "remote")  # Postfix's rewrite rule sets
REWRITE_CACHE_SIZE = 10000  # cached results per Rewriter before the cache starts over


def find_unquoted(text: str, ch: str, last: bool = False) -> int:
    """Index of the first (or last) ch in text outside quotes; -1 if none."""
    quoted = False
    hit = -1
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == '"':
            quoted = not quoted
        elif c == ch and not quoted:
            if not last:
                return i
            hit = i
        i += 1
    return hit


def strip_route(addr: str) -> str:
    """Drop a source route "@a,@b:" in front of addr."""
    if not addr.startswith("@"):
        return addr
    colon = find_unquoted(addr, ":")
    if colon < 0:
        return addr
    return addr[colon + 1 :]


class Rewriter:
    """Standard-form rewriting with one configuration; see the module docstring."""

    def __init__(self, cfg) -> None:
        self.myorigin = cfg.get("myorigin").lower()
        self.mydomain = cfg.get("mydomain").lower()
        self.remote_domain = cfg.get("remote_header_rewrite_domain").lower()
        self.append_at_myorigin = cfg.get_bool("append_at_myorigin")
        self.append_dot_mydomain = cfg.get_bool("append_dot_mydomain")
        self.swap_bangpath = cfg.get_bool("swap_bangpath")
        self.percent_hack = cfg.get_bool("allow_percent_hack")
        self._cache: dict[tuple[str, str], str] = {}

    def rewrite(self, addr: str, context: str = "local") -> str:
        """Return addr in standard form for context "local" or "remote"."""
        key = (addr, context)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        if context not in REWRITE_CONTEXTS:
            raise ValueError(f"unknown rewrite context: {context}")
        result = self._rewrite(addr, context)
        if len(self._cache) >= REWRITE_CACHE_SIZE:
            self._cache = {}
        self._cache[key] = result
        return result

    def _rewrite(self, addr: str, context: str) -> str:
        addr = strip_route(addr.strip())
        if not addr:
            return addr
        local, domain = split_addr(addr)
        if domain is not None and domain.endswith(".") and not domain.endswith(".."):
            domain = domain[:-1]
        if domain is None:
            bang = find_unquoted(local, "!") if self.swap_bangpath else -1
            if bang > 0 and bang < len(local) - 1:
                local, domain = local[bang + 1 :], local[:bang]
            elif self.percent_hack:
                pct = find_unquoted(local, "%", last=True)
                if pct > 0 and pct < len(local) - 1:
                    local, domain = local[:pct], local[pct + 1 :]
        if domain is None:
            if context == "local":
                if self.append_at_myorigin and self.myorigin:
                    domain = self.myorigin
            elif self.remote_domain:
                domain = self.remote_domain
            if domain is None:
                return local
        if (
            self.append_dot_mydomain
            and domain
            and "." not in domain
            and not domain.startswith("[")
            and domain.lower() != "localhost"
        ):
            suffix = self.mydomain if context == "local" else self.remote_domain
            if suffix:
                domain = f"{domain}.{suffix}"
        return f"{local}@{domain}"
