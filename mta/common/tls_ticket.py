"""common.tls_ticket - set the session-ticket key and session lifetime of an ssl.SSLContext

SYNOPSIS
    from mta.common.tls_ticket import TICKET_KEY_SIZE, install_ticket_key, set_session_timeout
    why = install_ticket_key(ctx, keybuf)     # "" when installed, else why not
    why = set_session_timeout(ctx, 3600)      # "" when set, else why not
    why = disable_session_cache(ctx)          # no stateful cache (tickets: ssl.OP_NO_TICKET)
    why = bind()                              # at start, while still root
    why = unavailable()                       # "" when the mechanism works here
    seconds = cache_timeout(cfg, "smtpd_tls_session_cache_timeout")   # 0: caching off

DESCRIPTION
    Python's ssl module gives no way to choose the keys that encrypt
    RFC 5077 / RFC 8446 session tickets: each SSL_CTX draws its own at
    random, so a ticket issued by one smtpd process is useless to the
    next. OpenSSL's SSL_CTX_set_tlsext_ticket_keys() is a macro around
    SSL_CTX_ctrl(ctx, SSL_CTRL_SET_TLSEXT_TICKET_KEYS, 80, buf), and
    SSL_CTX_set_timeout() is a function; this module calls both through
    ctypes on the SSL_CTX* inside the ssl.SSLContext object, in the very
    libssl that Python's _ssl module is linked to (found in
    /proc/self/maps after _ssl is loaded; a second copy of libssl is
    never loaded).

    The 80-byte key is what OpenSSL 1.1/3.x expect: 16 bytes key name,
    32 bytes HMAC-SHA256 secret, 32 bytes AES-256-CBC key. With this
    call OpenSSL holds one key per context: tickets under any other
    key (an older one) are declined and the client gets a full
    handshake and a new ticket.

    The pointer is never trusted blindly. Before the first write to a
    context, SSL_CTX_get_options() through the pointer must equal
    ctx.options, and after a key is set SSL_CTRL_GET_TLSEXT_TICKET_KEYS
    must read back the same 80 bytes. When a check fails (another
    Python build, another object layout, no libssl in the map) every
    call returns the reason instead, and the caller keeps OpenSSL's
    per-process tickets: resumption then works only within a process.

    cache_timeout() reads a *_tls_session_cache_timeout as Postfix
    does: 0 or less turns session caching (and tickets) off, a value
    under 2 minutes counts as 2 minutes, and one over 100 days as 100
    days.

SECURITY
    Handles the ticket key, which decrypts every session ticket issued
    under it: kept in memory only, never logged. Writes into OpenSSL's
    context through a checked pointer; never frees or allocates there.
"""

from __future__ import annotations

import ctypes
import os
import ssl

TICKET_KEY_SIZE = 80  # key name 16 + HMAC secret 32 + AES key 32
TICKET_NAME_SIZE = 16  # bytes of the key name at the start of the key
SSL_CTRL_GET_TLSEXT_TICKET_KEYS = 58  # ssl.h
SSL_CTRL_SET_TLSEXT_TICKET_KEYS = 59  # ssl.h
SSL_CTRL_SET_SESS_CACHE_MODE = 44  # ssl.h
SSL_SESS_CACHE_OFF = 0  # ssl.h: no session cache on either side

CACHE_TIMEOUT_MIN = 120  # seconds: Postfix's floor for a positive session cache timeout
CACHE_TIMEOUT_MAX = 100 * 86400  # seconds: Postfix's ceiling (100 days)


def cache_timeout(cfg, name: str = "smtpd_tls_session_cache_timeout") -> int:
    """The session cache timeout in seconds, clamped as Postfix does; 0 means off."""
    seconds = int(cfg.get_time(name))
    if seconds <= 0:
        return 0
    return min(max(seconds, CACHE_TIMEOUT_MIN), CACHE_TIMEOUT_MAX)


_lib: ctypes.CDLL | None = None
_why_not: str | None = None  # None: not looked at yet


def _libssl_path() -> str:
    """The libssl mapped into this process by Python's _ssl module."""
    import _ssl  # noqa: F401 - makes sure the library is mapped

    with open("/proc/self/maps", "rb") as f:
        for line in f:
            fields = line.split()
            if len(fields) >= 6 and b"/libssl.so" in fields[5]:
                return os.fsdecode(fields[5])
    return ""


def _load() -> str:
    """Bind the OpenSSL functions; "" or why they cannot be used. Call it
    (bind()) before giving up root: /proc/self/maps of a process that
    changed its user is root's."""
    global _lib, _why_not
    if _why_not is not None:
        return _why_not
    _why_not = ""
    try:
        try:
            path = _libssl_path()
        except OSError as exc:
            _why_not = f"cannot read /proc/self/maps: {exc.strerror or exc}"
            return _why_not
        if not path:
            _why_not = "no libssl mapped into the process"
            return _why_not
        lib = ctypes.CDLL(path, mode=os.RTLD_NOLOAD | os.RTLD_NOW)  # never a second copy
        lib.SSL_CTX_ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_void_p]
        lib.SSL_CTX_ctrl.restype = ctypes.c_long
        lib.SSL_CTX_get_options.argtypes = [ctypes.c_void_p]
        lib.SSL_CTX_get_options.restype = ctypes.c_uint64
        lib.SSL_CTX_set_timeout.argtypes = [ctypes.c_void_p, ctypes.c_long]
        lib.SSL_CTX_set_timeout.restype = ctypes.c_long
        lib.SSL_CTX_get_timeout.argtypes = [ctypes.c_void_p]
        lib.SSL_CTX_get_timeout.restype = ctypes.c_long
    except (OSError, AttributeError, ValueError) as exc:
        _why_not = f"cannot bind libssl: {exc}"
        return _why_not
    _lib = lib
    return ""


def bind() -> str:
    """Find and bind libssl now (before privileges are dropped); "" or why not."""
    return _load()


def unavailable() -> str:
    """ "" when ticket keys can be set here, else the reason."""
    why = _load()
    if why:
        return why
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    return "" if _ctx_pointer(probe) else "the SSL_CTX pointer of ssl.SSLContext does not check out"


def _ctx_pointer(ctx: ssl.SSLContext) -> int:
    """The SSL_CTX* of ctx, checked against ctx.options; 0 when it does not check out."""
    if _load() or not isinstance(ctx, ssl.SSLContext):
        return 0
    # PySSLContext: PyObject_HEAD, then SSL_CTX *ctx
    ptr = ctypes.c_void_p.from_address(id(ctx) + object.__basicsize__).value
    if not ptr:
        return 0
    if _lib.SSL_CTX_get_options(ptr) != int(ctx.options):
        return 0
    return ptr


def install_ticket_key(ctx: ssl.SSLContext, keybuf: bytes) -> str:
    """Make ctx encrypt and decrypt tickets with keybuf; "" or why not."""
    if len(keybuf) != TICKET_KEY_SIZE:
        return f"ticket key of {len(keybuf)} bytes, not {TICKET_KEY_SIZE}"
    ptr = _ctx_pointer(ctx)
    if not ptr:
        return _why_not or "the SSL_CTX pointer of ssl.SSLContext does not check out"
    buf = ctypes.create_string_buffer(keybuf, TICKET_KEY_SIZE)
    if _lib.SSL_CTX_ctrl(ptr, SSL_CTRL_SET_TLSEXT_TICKET_KEYS, TICKET_KEY_SIZE, buf) != 1:
        return "SSL_CTX_set_tlsext_ticket_keys failed"
    back = ctypes.create_string_buffer(TICKET_KEY_SIZE)
    if _lib.SSL_CTX_ctrl(ptr, SSL_CTRL_GET_TLSEXT_TICKET_KEYS, TICKET_KEY_SIZE, back) != 1:
        return "SSL_CTX_get_tlsext_ticket_keys failed"
    if back.raw != keybuf:
        return "the ticket key did not read back"
    return ""


def installed_key_name(ctx: ssl.SSLContext) -> bytes:
    """The name (first 16 bytes) of the ticket key ctx uses; b"" when unknown."""
    ptr = _ctx_pointer(ctx)
    if not ptr:
        return b""
    back = ctypes.create_string_buffer(TICKET_KEY_SIZE)
    if _lib.SSL_CTX_ctrl(ptr, SSL_CTRL_GET_TLSEXT_TICKET_KEYS, TICKET_KEY_SIZE, back) != 1:
        return b""
    return back.raw[:TICKET_NAME_SIZE]


def set_session_timeout(ctx: ssl.SSLContext, seconds: int) -> str:
    """Sessions (and the lifetime hint of tickets) of ctx last seconds; "" or why not."""
    ptr = _ctx_pointer(ctx)
    if not ptr:
        return _why_not or "the SSL_CTX pointer of ssl.SSLContext does not check out"
    _lib.SSL_CTX_set_timeout(ptr, int(seconds))
    if _lib.SSL_CTX_get_timeout(ptr) != int(seconds):
        return "SSL_CTX_set_timeout did not take"
    return ""


def disable_session_cache(ctx: ssl.SSLContext) -> str:
    """Turn off ctx's stateful session cache (session ids); "" or why not."""
    ptr = _ctx_pointer(ctx)
    if not ptr:
        return _why_not or "the SSL_CTX pointer of ssl.SSLContext does not check out"
    _lib.SSL_CTX_ctrl(ptr, SSL_CTRL_SET_SESS_CACHE_MODE, SSL_SESS_CACHE_OFF, None)
    return ""
