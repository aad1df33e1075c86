# cython: language_level=3
"""addr - mail address kernels, compiled twin of addr_ref.py

Same API and results as addr_ref. The byte scanners (parse_path,
scan_addr_list) walk a char pointer once; the text helpers (split_addr,
quote_local, unquote_local, canon_addr) loop over Py_UCS4 code points.
"""

from cpython.bytes cimport PyBytes_FromStringAndSize

from mta._speedups.addr_ref import AddrError

cdef enum TokKind:
    T_ATOM = 0
    T_QUOTED = 1
    T_LITERAL = 2
    T_SPECIAL = 3


cdef inline bint _blank(unsigned char c) noexcept nogil:
    return c == 32 or c == 9


cdef Py_ssize_t _close_bracket(const unsigned char *p, Py_ssize_t n, Py_ssize_t start) except -1:
    cdef bint quoted = False
    cdef Py_ssize_t i = start + 1
    cdef unsigned char c
    while i < n:
        c = p[i]
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


cdef bytes _strip_route(bytes inner):
    cdef const unsigned char *p = inner
    cdef Py_ssize_t n = len(inner), colon = -1, i, hop_start
    if n == 0 or p[0] != 0x40:
        return inner
    for i in range(n):
        if p[i] == 0x3A:
            colon = i
            break
    if colon < 0:
        return inner
    hop_start = 0
    i = 0
    while i <= colon:
        if i == colon or p[i] == 0x2C:
            if i - hop_start < 2 or p[hop_start] != 0x40:
                return inner
            hop_start = i + 1
        elif p[i] == 32 or (p[i] == 0x40 and i != hop_start):
            return inner
        i += 1
    return inner[colon + 1:]


cdef bint _domain_ok(str domain):
    cdef Py_ssize_t n = len(domain), i, label = 0
    cdef Py_UCS4 c
    if n == 0:
        return False
    if domain[0] == u"[":
        if n < 3 or domain[n - 1] != u"]":
            return False
        for i in range(1, n - 1):
            c = domain[i]
            if c == u"[" or c == u"]" or c == u"\\" or c == u" " or c == u"\t":
                return False
        return True
    if domain[n - 1] == u".":
        n -= 1
    if n == 0:
        return False
    for i in range(n):
        c = domain[i]
        if c == u".":
            if label == 0:
                return False
            label = 0
            continue
        if (c == u" " or c == u"\t" or c == u'"' or c == u"<" or c == u">" or c == u"("
                or c == u")" or c == u"," or c == u";" or c == u":" or c == u"\\"
                or c == u"@" or c == u"[" or c == u"]"):
            return False
        label += 1
    return label > 0


cdef bint _check_quoted(str local):
    cdef Py_ssize_t n = len(local), i = 1
    cdef Py_UCS4 c
    if n < 2 or local[n - 1] != u'"':
        return False
    while i < n - 1:
        c = local[i]
        if c == u"\\":
            i += 2
            continue
        if c == u'"':
            return False
        i += 1
    return i == n - 1


cdef int _check(str addr) except -1:
    cdef Py_UCS4 c
    for c in addr:
        if c < 32 or c == 127:
            raise AddrError("control character")
    local, domain = split_addr(addr)
    if domain is not None and not _domain_ok(domain):
        raise AddrError("bad domain")
    if u'"' in local:
        if not local.startswith(u'"') or not _check_quoted(local):
            raise AddrError("bad quoted local part")
    elif u" " in local or u"\t" in local or (domain is not None and not local):
        raise AddrError("bad local part")
    return 0


def parse_path(text, bint strict=False):
    cdef bytes data = bytes(text)
    cdef const unsigned char *p = data
    cdef Py_ssize_t n = len(data), i = 0, end, after
    cdef bytes inner
    while i < n and _blank(p[i]):
        i += 1
    if i < n and p[i] == 0x3C:
        end = _close_bracket(p, n, i)
        inner = data[i + 1:end]
        after = end + 1
        if after < n and not _blank(p[after]):
            raise AddrError("text after >")
    else:
        if strict:
            raise AddrError("missing <")
        end = i
        while end < n and not _blank(p[end]):
            end += 1
        inner = data[i:end]
        after = end
        if end == i:
            raise AddrError("empty path")
    inner = _strip_route(inner)
    if inner:
        try:
            addr = inner.decode("utf-8")
        except UnicodeDecodeError:
            raise AddrError("not UTF-8") from None
        _check(addr)
    return inner, after


cpdef tuple split_addr(str addr):
    cdef bint quoted = False
    cdef Py_ssize_t at = -1, i = 0, n = len(addr)
    cdef Py_UCS4 c
    while i < n:
        c = addr[i]
        if c == u"\\" and quoted:
            i += 2
            continue
        if c == u'"':
            quoted = not quoted
        elif c == u"@" and not quoted:
            at = i
        i += 1
    if at < 0:
        return addr, None
    return addr[:at], addr[at + 1:]


cdef inline bint _is_atext(Py_UCS4 c):
    if c >= 128:
        return True
    if (u"a" <= c <= u"z") or (u"A" <= c <= u"Z") or (u"0" <= c <= u"9"):
        return True
    return c in u"!#$%&'*+-/=?^_`{|}~"


def quote_local(str local):
    cdef Py_ssize_t n = len(local), i
    cdef Py_UCS4 c, prev = 0
    cdef bint ok = n > 0
    if ok:
        for i in range(n):
            c = local[i]
            if c == u".":
                if i == 0 or i == n - 1 or prev == u".":
                    ok = False
                    break
            elif not _is_atext(c):
                ok = False
                break
            prev = c
    if ok:
        return local
    out = [u'"']
    for c in local:
        if c == u'"' or c == u"\\":
            out.append(u"\\")
        out.append(c)
    out.append(u'"')
    return u"".join(out)


def unquote_local(str local):
    cdef Py_ssize_t n = len(local), i = 0
    cdef Py_UCS4 c
    if u'"' not in local and u"\\" not in local:
        return local
    out = []
    while i < n:
        c = local[i]
        if c == u"\\" and i + 1 < n:
            out.append(local[i + 1])
            i += 2
            continue
        if c != u'"':
            out.append(c)
        i += 1
    return u"".join(out)


def canon_addr(str addr):
    local, domain = split_addr(addr)
    if domain is None:
        return addr
    return local + u"@" + domain.lower()


# ---- RFC 5322 address lists

cdef inline bint _atom_stop(unsigned char c) noexcept nogil:
    return (c == 32 or c == 9 or c == 13 or c == 10 or c == 0x28 or c == 0x29 or c == 0x22
            or c == 0x5B or c == 0x5D or c == 0x3C or c == 0x3E or c == 0x2C or c == 0x3B
            or c == 0x3A or c == 0x40 or c == 0x5C)


cdef list _tokens(const unsigned char *p, Py_ssize_t n):
    cdef list out = []
    cdef Py_ssize_t i = 0, start
    cdef int depth
    cdef unsigned char c
    while i < n:
        c = p[i]
        if c == 32 or c == 9 or c == 13 or c == 10:
            i += 1
        elif c == 0x28:
            depth = 1
            i += 1
            while i < n and depth:
                c = p[i]
                if c == 0x5C:
                    i += 1
                elif c == 0x28:
                    depth += 1
                elif c == 0x29:
                    depth -= 1
                i += 1
        elif c == 0x22 or c == 0x5B:
            start = i
            i += 1
            while i < n and p[i] != (0x22 if c == 0x22 else 0x5D):
                if p[i] == 0x5C:
                    i += 1
                i += 1
            i = min(i + 1, n)
            out.append((T_QUOTED if c == 0x22 else T_LITERAL, start, i))
        elif c == 0x3C or c == 0x3E or c == 0x2C or c == 0x3B or c == 0x3A or c == 0x40:
            out.append((T_SPECIAL, i, i + 1))
            i += 1
        elif c == 0x29 or c == 0x5D:
            i += 1
        else:
            start = i
            while i < n and not _atom_stop(p[i]):
                i += 1
            if i == start:
                i += 1
            out.append((T_ATOM, start, i))
    return out


cdef bytes _join(bytes data, list toks, Py_ssize_t a, Py_ssize_t b):
    """The text of tokens a..b-1, leaving out stray ">" specials."""
    cdef Py_ssize_t k, s
    cdef const unsigned char *p = data
    if b - a == 1:
        t = toks[a]
        return data[<Py_ssize_t>t[1]:<Py_ssize_t>t[2]]
    parts = []
    for k in range(a, b):
        t = toks[k]
        s = t[1]
        if t[0] == T_SPECIAL and p[s] == 0x3E:
            continue
        parts.append(data[s:<Py_ssize_t>t[2]])
    return b"".join(parts)


def scan_addr_list(value):
    cdef bytes data = bytes(value)
    cdef const unsigned char *p = data
    cdef list toks = _tokens(p, len(data))
    cdef list result = []
    cdef Py_ssize_t n = len(toks), i = 0, j, pstart = -1, pend = -1
    cdef int kind
    cdef Py_ssize_t start, end
    cdef unsigned char ch
    while i < n:
        kind, start, end = toks[i]
        ch = p[start] if kind == T_SPECIAL else 0
        if ch == 0x3C:
            j = i + 1
            while j < n and not (toks[j][0] == T_SPECIAL and p[<Py_ssize_t>toks[j][1]] == 0x3E):
                j += 1
            if j > i + 1:
                addr = _strip_route(_join(data, toks, i + 1, j))
                result.append((toks[i + 1][1], toks[j - 1][2], addr))
            else:
                result.append((end, end, b""))
            pstart = -1
            i = j + 1
            while i < n and not (
                toks[i][0] == T_SPECIAL and (p[<Py_ssize_t>toks[i][1]] == 0x2C
                                             or p[<Py_ssize_t>toks[i][1]] == 0x3B)
            ):
                i += 1
            continue
        if ch == 0x3A:
            pstart = -1
        elif ch == 0x2C or ch == 0x3B:
            if pstart >= 0:
                result.append((toks[pstart][1], toks[pend][2], _join(data, toks, pstart, pend + 1)))
                pstart = -1
        elif ch != 0x3E:
            if pstart < 0:
                pstart = i
            pend = i
        i += 1
    if pstart >= 0:
        result.append((toks[pstart][1], toks[pend][2], _join(data, toks, pstart, pend + 1)))
    return result


def parse_addr_list(value):
    return [
        addr.decode("utf-8", "surrogateescape")
        for _, _, addr in scan_addr_list(value)
        if addr
    ]
