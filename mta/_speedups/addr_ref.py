"""addr_ref - mail address kernels, reference version; the spec for addr.pyx

SYNOPSIS
    from mta._speedups.addr_ref import (
        AddrError, parse_path, split_addr, quote_local, unquote_local, canon_addr,
        scan_addr_list, parse_addr_list)
    parse_path(b"<@a,@b:u@x.org> SIZE=9")        # (b"u@x.org", 16); strict=True: "<>" needed
    split_addr('"a@b"@x.org')                    # ('"a@b"', "x.org")
    quote_local("john smith")                    # '"john smith"'
    unquote_local('"john smith"')                # "john smith"
    canon_addr("John@Example.ORG")               # "John@example.org"
    scan_addr_list(b"Ann <a@x>, b@y (Bob)")      # [(5, 8, b"a@x"), (11, 14, b"b@y")]
    parse_addr_list(b"team: a@x, b@y;")          # ["a@x", "b@y"]

DESCRIPTION
    parse_path() reads the RFC 5321 path at the start of the argument of
    MAIL FROM: or RCPT TO: (blanks before it are allowed) and returns the
    address without angle brackets and the offset where the ESMTP
    parameters begin. "<>" gives b"". A source route ("@a,@b:") is
    dropped. A path without angle brackets runs to the next blank, as
    Postfix accepts with strict_rfc821_envelopes = no; strict=True
    refuses it (strict_rfc821_envelopes = yes). Quoted local
    parts keep their quotes; a local part with a quote must be one
    quoted string. The address must be UTF-8 without control
    characters, and a domain, when present, a name or an address literal.
    Anything else raises AddrError with a short reason.

    split_addr() splits at the last "@" outside quotes (a backslash
    escapes only inside quotes, as RFC 5321 allows) and returns
    (local, domain), domain None when there is no "@". quote_local()
    quotes a local part that is not an RFC 5321 Dot-string, escaping
    '"' and "\\"; unquote_local() removes quoting and escapes.
    canon_addr() lower-cases the domain only (the local part is case-
    sensitive in principle).

    scan_addr_list() walks an RFC 5322 address-list header value (To:,
    Cc:, From: ...) with display names, comments, quoted strings, angle
    addresses, groups and domain literals, and returns for each address
    (start, end, address): the span of the value that holds the address
    (the text inside angle brackets, or the bare addr-spec) and the
    address with comments and folding white space taken out and a source
    route dropped. A replacement written into a span keeps display names
    and comments as they were. parse_addr_list() gives just the non-empty
    addresses, as text.

SECURITY
    Sees untrusted client and message input. Linear in the input; never
    raises anything but AddrError (parse_path) for bad input; the header
    scanner never raises and takes what it can from malformed text.

STANDARDS
    RFC 5321 section 4.1.2 (paths), RFC 5322 sections 3.2-3.4 (addresses).
"""

from __future__ import annotations


class AddrError(ValueError):
    """A path that is not an address; shared by both implementations."""


_SPECIALS = frozenset('()<>[]:;@\\,."')
_ATEXT_EXTRA = frozenset("!#$%&'*+-/=?^_`{|}~")
_BAD_DOMAIN = frozenset(' \t"<>(),;:\\@')


def _close_bracket(data: bytes, start: int) -> int:
    """Index of the ">" closing the "<" at start; quotes and backslashes skipped."""
    quoted = False
    i = start + 1
    n = len(data)
    while i < n:
        c = data[i]
        if c == 0x5C:
            i += 2
            continue
        if c == 0x22:
            quoted = not quoted
        elif c == 0x3E and not quoted:
            return i
        elif c == 0x3C and not quoted:
            raise AddrError("nested <")
        i += 1
    raise AddrError("missing >")


def _strip_route(inner: bytes) -> bytes:
    """Drop a leading source route "@a,@b:"; leave other text alone."""
    if not inner.startswith(b"@"):
        return inner
    colon = inner.find(b":")
    if colon < 0:
        return inner
    route = inner[:colon]
    for hop in route.split(b","):
        if len(hop) < 2 or hop[0] != 0x40 or b" " in hop or b"@" in hop[1:]:
            return inner
    return inner[colon + 1 :]


def _domain_ok(domain: str) -> bool:
    if not domain:
        return False
    if domain[0] == "[":
        inner = domain[1:-1]
        return domain[-1] == "]" and bool(inner) and not any(c in "[]\\ \t" for c in inner)
    if domain.endswith("."):
        domain = domain[:-1]
    if not domain:
        return False
    for label in domain.split("."):
        if not label or any(c in _BAD_DOMAIN or c in "[]" for c in label):
            return False
    return True


def _check_quoted(local: str) -> bool:
    """True when local is one quoted string: '"' ... '"' with escapes."""
    n = len(local)
    if n < 2 or local[-1] != '"':
        return False
    i = 1
    while i < n - 1:
        c = local[i]
        if c == "\\":
            i += 2
            continue
        if c == '"':
            return False
        i += 1
    return i == n - 1


def _check(addr: str) -> None:
    for ch in addr:
        if ord(ch) < 32 or ord(ch) == 127:
            raise AddrError("control character")
    local, domain = split_addr(addr)
    if domain is not None and not _domain_ok(domain):
        raise AddrError("bad domain")
    if '"' in local:
        if not local.startswith('"') or not _check_quoted(local):
            raise AddrError("bad quoted local part")
    elif " " in local or "\t" in local or (domain is not None and not local):
        raise AddrError("bad local part")


def parse_path(text: bytes, strict: bool = False) -> tuple[bytes, int]:
    """Return (address, offset after the path); AddrError when it is no address."""
    data = bytes(text)
    n = len(data)
    i = 0
    while i < n and data[i] in b" \t":
        i += 1
    if i < n and data[i] == 0x3C:
        end = _close_bracket(data, i)
        inner = data[i + 1 : end]
        after = end + 1
        if after < n and data[after] not in b" \t":
            raise AddrError("text after >")
    else:
        if strict:
            raise AddrError("missing <")
        end = i
        while end < n and data[end] not in b" \t":
            end += 1
        inner = data[i:end]
        after = end
        if not inner:
            raise AddrError("empty path")
    inner = _strip_route(inner)
    if inner:
        try:
            addr = inner.decode("utf-8")
        except UnicodeDecodeError:
            raise AddrError("not UTF-8") from None
        _check(addr)
    return inner, after


def split_addr(addr: str) -> tuple[str, str | None]:
    """Split at the last "@" outside quotes: (local, domain or None)."""
    quoted = False
    at = -1
    i = 0
    n = len(addr)
    while i < n:
        c = addr[i]
        if c == "\\" and quoted:
            i += 2
            continue
        if c == '"':
            quoted = not quoted
        elif c == "@" and not quoted:
            at = i
        i += 1
    if at < 0:
        return addr, None
    return addr[:at], addr[at + 1 :]


def _is_atext(c: str) -> bool:
    return c.isalnum() or c in _ATEXT_EXTRA or ord(c) >= 128


def quote_local(local: str) -> str:
    """Quote local when it is not an RFC 5321 Dot-string; else return it."""
    if local and not local.startswith(".") and not local.endswith(".") and ".." not in local:
        if all(c == "." or _is_atext(c) for c in local):
            return local
    out = ['"']
    for c in local:
        if c == '"' or c == "\\":
            out.append("\\")
        out.append(c)
    out.append('"')
    return "".join(out)


def unquote_local(local: str) -> str:
    """Remove quotes and backslash escapes from local."""
    if '"' not in local and "\\" not in local:
        return local
    out = []
    i = 0
    n = len(local)
    while i < n:
        c = local[i]
        if c == "\\" and i + 1 < n:
            out.append(local[i + 1])
            i += 2
            continue
        if c != '"':
            out.append(c)
        i += 1
    return "".join(out)


def canon_addr(addr: str) -> str:
    """Lower-case the domain of addr, keep the local part."""
    local, domain = split_addr(addr)
    if domain is None:
        return addr
    return local + "@" + domain.lower()


# ---- RFC 5322 address lists

_T_ATOM = 0  # atom or dot
_T_QUOTED = 1  # "quoted string" (text kept with its quotes)
_T_LITERAL = 2  # [domain literal]
_T_SPECIAL = 3  # one of < > , ; : @


def _tokens(data: bytes) -> list[tuple[int, int, int]]:
    """(kind, start, end) of the tokens of data; comments and blanks skipped."""
    out: list[tuple[int, int, int]] = []
    n = len(data)
    i = 0
    while i < n:
        c = data[i]
        if c in b" \t\r\n":
            i += 1
        elif c == 0x28:  # ( comment, nested, with escapes
            depth = 1
            i += 1
            while i < n and depth:
                c = data[i]
                if c == 0x5C:
                    i += 1
                elif c == 0x28:
                    depth += 1
                elif c == 0x29:
                    depth -= 1
                i += 1
        elif c == 0x22:  # "quoted string"
            start = i
            i += 1
            while i < n and data[i] != 0x22:
                if data[i] == 0x5C:
                    i += 1
                i += 1
            i = min(i + 1, n)
            out.append((_T_QUOTED, start, i))
        elif c == 0x5B:  # [domain literal]
            start = i
            i += 1
            while i < n and data[i] != 0x5D:
                if data[i] == 0x5C:
                    i += 1
                i += 1
            i = min(i + 1, n)
            out.append((_T_LITERAL, start, i))
        elif c in b"<>,;:@":
            out.append((_T_SPECIAL, i, i + 1))
            i += 1
        elif c == 0x29 or c == 0x5D:  # stray closer: skip
            i += 1
        else:
            start = i
            while i < n and data[i] not in b' \t\r\n()"[]<>,;:@\\' and data[i] != 0x5D:
                i += 1
            if i == start:  # lone backslash
                i += 1
            out.append((_T_ATOM, start, i))
    return out


def _join(data: bytes, toks: list[tuple[int, int, int]]) -> bytes:
    return b"".join(data[s:e] for _, s, e in toks)


def scan_addr_list(value: bytes) -> list[tuple[int, int, bytes]]:
    """Return (start, end, address) for each address in an address-list value."""
    data = bytes(value)
    toks = _tokens(data)
    result: list[tuple[int, int, bytes]] = []
    n = len(toks)
    i = 0
    pending: list[tuple[int, int, int]] = []  # tokens of the current mailbox so far

    def flush_bare() -> None:
        if pending:
            result.append((pending[0][1], pending[-1][2], _join(data, pending)))
            pending.clear()

    while i < n:
        kind, start, end = toks[i]
        ch = data[start] if kind == _T_SPECIAL else 0
        if ch == 0x3C:  # "<" angle address: the phrase before it is a display name
            j = i + 1
            while j < n and not (toks[j][0] == _T_SPECIAL and data[toks[j][1]] == 0x3E):
                j += 1
            inner = toks[i + 1 : j]
            if inner:
                addr = _strip_route(_join(data, inner))
                result.append((inner[0][1], inner[-1][2], addr))
            else:
                result.append((end, end, b""))
            pending.clear()
            i = j + 1
            # skip to the end of this mailbox
            while i < n and not (toks[i][0] == _T_SPECIAL and data[toks[i][1]] in b",;"):
                i += 1
            continue
        if ch == 0x3A:  # ":" ends a group's display name
            pending.clear()
        elif ch == 0x2C or ch == 0x3B:  # "," or ";" ends a mailbox
            flush_bare()
        elif ch == 0x3E:
            pass
        else:
            pending.append(toks[i])
        i += 1
    flush_bare()
    return result


def parse_addr_list(value: bytes) -> list[str]:
    """The non-empty addresses of an address-list value, as text."""
    return [addr.decode("utf-8", "surrogateescape") for _, _, addr in scan_addr_list(value) if addr]
