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
    libssl that Python's _ssl module is linked to (common/tls_libssl.py
    finds and binds it; bind() here is its bind()).

    The 80-byte key is what OpenSSL 1.1/3.x expect: 16 bytes key name,
    32 bytes HMAC-SHA256 secret, 32 bytes AES-256-CBC key. With this
    call OpenSSL holds one key per context: tickets under any other
    key (an older one) are declined and the client gets a full
    handshake and a new ticket.

    The pointer is never trusted blindly: tls_libssl.ctx_pointer()
    checks it before each write to a context, and after a key is set SSL_CTRL_GET_TLSEXT_TICKET_KEYS
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
import ssl

from mta.common import tls_libssl

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


def bind() -> str:
    """Find and bind libssl now (before privileges are dropped); "" or why not."""
    return tls_libssl.bind()


def unavailable() -> str:
    """ "" when ticket keys can be set here, else the reason."""
    return tls_libssl.unavailable()


def install_ticket_key(ctx: ssl.SSLContext, keybuf: bytes) -> str:
    """Make ctx encrypt and decrypt tickets with keybuf; "" or why not."""
    if len(keybuf) != TICKET_KEY_SIZE:
        return f"ticket key of {len(keybuf)} bytes, not {TICKET_KEY_SIZE}"
    ptr, why = tls_libssl.ctx_pointer_why(ctx)
    if not ptr:
        return why
    lib = tls_libssl.libssl()
    buf = ctypes.create_string_buffer(keybuf, TICKET_KEY_SIZE)
    if lib.SSL_CTX_ctrl(ptr, SSL_CTRL_SET_TLSEXT_TICKET_KEYS, TICKET_KEY_SIZE, buf) != 1:
        return "SSL_CTX_set_tlsext_ticket_keys failed"
    back = ctypes.create_string_buffer(TICKET_KEY_SIZE)
    if lib.SSL_CTX_ctrl(ptr, SSL_CTRL_GET_TLSEXT_TICKET_KEYS, TICKET_KEY_SIZE, back) != 1:
        return "SSL_CTX_get_tlsext_ticket_keys failed"
    if back.raw != keybuf:
        return "the ticket key did not read back"
    return ""


def installed_key_name(ctx: ssl.SSLContext) -> bytes:
    """The name (first 16 bytes) of the ticket key ctx uses; b"" when unknown."""
    ptr = tls_libssl.ctx_pointer(ctx)
    if not ptr:
        return b""
    lib = tls_libssl.libssl()
    back = ctypes.create_string_buffer(TICKET_KEY_SIZE)
    if lib.SSL_CTX_ctrl(ptr, SSL_CTRL_GET_TLSEXT_TICKET_KEYS, TICKET_KEY_SIZE, back) != 1:
        return b""
    return back.raw[:TICKET_NAME_SIZE]


def set_session_timeout(ctx: ssl.SSLContext, seconds: int) -> str:
    """Sessions (and the lifetime hint of tickets) of ctx last seconds; "" or why not."""
    ptr, why = tls_libssl.ctx_pointer_why(ctx)
    if not ptr:
        return why
    lib = tls_libssl.libssl()
    lib.SSL_CTX_set_timeout(ptr, int(seconds))
    if lib.SSL_CTX_get_timeout(ptr) != int(seconds):
        return "SSL_CTX_set_timeout did not take"
    return ""


def disable_session_cache(ctx: ssl.SSLContext) -> str:
    """Turn off ctx's stateful session cache (session ids); "" or why not."""
    ptr, why = tls_libssl.ctx_pointer_why(ctx)
    if not ptr:
        return why
    lib = tls_libssl.libssl()
    lib.SSL_CTX_ctrl(ptr, SSL_CTRL_SET_SESS_CACHE_MODE, SSL_SESS_CACHE_OFF, None)
    return ""
