"""common.tls_serial - carry a client TLS session from one process to another

SYNOPSIS
    from mta.common.tls_serial import session_der, offer_der
    der = session_der(ssl_object)        # b"" when it cannot be had
    why = offer_der(ssl_object, der)     # before the handshake; "" when set

DESCRIPTION
    Python's ssl keeps SSLSession objects inside the process that made
    them. session_der() writes the session of a connection in OpenSSL's
    DER form (i2d_SSL_SESSION), and offer_der() reads one back
    (d2i_SSL_SESSION) and sets it on a connection that has not started
    its handshake (SSL_set_session), both through ctypes on the libssl
    that Python's _ssl is linked to (common/tls_ticket.py binds it).

    Pointers are checked before use, as in tls_ticket.py: the SSL* of
    an SSLObject must belong to the SSL_CTX* of its context, and the
    SSL_SESSION* of an SSLSession must report the same time and
    timeout as the Python object. Anything that does not check out is
    not touched: the connection then makes a full handshake.

SECURITY
    A DER session holds the session's master secret: it travels only
    over the private tlsmgr socket and rests in the
    smtp_tls_session_cache_database file of the mail_owner. d2i is
    OpenSSL's ASN.1 parser; a blob that does not parse is refused.
"""

from __future__ import annotations

import ctypes
import ssl

from mta.common import tls_ticket

SESSION_DER_MAX = 16384  # bytes of one serialized session, at most

_bound = False


def _bind() -> bool:
    global _bound
    if _bound:
        return True
    if tls_ticket.bind():
        return False
    lib = tls_ticket._lib
    try:
        lib.SSL_get_SSL_CTX.argtypes = [ctypes.c_void_p]
        lib.SSL_get_SSL_CTX.restype = ctypes.c_void_p
        lib.SSL_SESSION_get_time.argtypes = [ctypes.c_void_p]
        lib.SSL_SESSION_get_time.restype = ctypes.c_long
        lib.SSL_SESSION_get_timeout.argtypes = [ctypes.c_void_p]
        lib.SSL_SESSION_get_timeout.restype = ctypes.c_long
        lib.SSL_SESSION_is_resumable.argtypes = [ctypes.c_void_p]
        lib.SSL_SESSION_is_resumable.restype = ctypes.c_int
        lib.i2d_SSL_SESSION.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        lib.i2d_SSL_SESSION.restype = ctypes.c_int
        lib.d2i_SSL_SESSION.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_long]
        lib.d2i_SSL_SESSION.restype = ctypes.c_void_p
        lib.SSL_set_session.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        lib.SSL_set_session.restype = ctypes.c_int
        lib.SSL_SESSION_free.argtypes = [ctypes.c_void_p]
        lib.SSL_SESSION_free.restype = None
    except AttributeError:
        return False
    _bound = True
    return True


def _field(obj: object, index: int) -> int:
    """The index-th pointer after PyObject_HEAD of obj."""
    return ctypes.c_void_p.from_address(id(obj) + object.__basicsize__ + 8 * index).value or 0


def _ssl_pointer(ssl_object: ssl.SSLObject) -> int:
    """The SSL* of an SSLObject, checked against its context; 0 when it does not check out."""
    inner = getattr(ssl_object, "_sslobj", None)
    ctx_ptr = tls_ticket._ctx_pointer(ssl_object.context)
    if inner is None or not ctx_ptr:
        return 0
    # PySSLSocket: PyObject_HEAD, PyObject *Socket, SSL *ssl, PySSLContext *ctx
    ssl_ptr = _field(inner, 1)
    if not ssl_ptr or _field(inner, 2) != id(ssl_object.context):
        return 0
    if tls_ticket._lib.SSL_get_SSL_CTX(ssl_ptr) != ctx_ptr:
        return 0
    return ssl_ptr


def _session_pointer(session: ssl.SSLSession) -> int:
    """The SSL_SESSION* of an SSLSession, checked; 0 when it does not check out."""
    if not isinstance(session, ssl.SSLSession):
        return 0
    ptr = _field(session, 0)  # PySSLSession: PyObject_HEAD, SSL_SESSION *session
    lib = tls_ticket._lib
    if not ptr or lib.SSL_SESSION_get_time(ptr) != session.time:
        return 0
    if lib.SSL_SESSION_get_timeout(ptr) != session.timeout:
        return 0
    return ptr


def session_der(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> bytes:
    """The session of a connection in DER form; b"" when it cannot be had."""
    if not _bind():
        return b""
    session = ssl_object.session
    ptr = _session_pointer(session) if session is not None else 0
    lib = tls_ticket._lib
    if not ptr or lib.SSL_SESSION_is_resumable(ptr) != 1:
        return b""
    size = lib.i2d_SSL_SESSION(ptr, None)
    if size <= 0 or size > SESSION_DER_MAX:
        return b""
    buf = ctypes.create_string_buffer(size)
    out = ctypes.c_void_p(ctypes.addressof(buf))
    if lib.i2d_SSL_SESSION(ptr, ctypes.byref(out)) != size:
        return b""
    return buf.raw


def offer_der(ssl_object: ssl.SSLObject, der: bytes) -> str:
    """Offer the session der in the coming handshake of ssl_object; "" or why not."""
    if not der or len(der) > SESSION_DER_MAX:
        return "no session"
    if not _bind():
        return "libssl cannot be used"
    ssl_ptr = _ssl_pointer(ssl_object)
    if not ssl_ptr:
        return "the SSL pointer does not check out"
    lib = tls_ticket._lib
    buf = ctypes.create_string_buffer(der, len(der))
    inp = ctypes.c_void_p(ctypes.addressof(buf))
    sess = lib.d2i_SSL_SESSION(None, ctypes.byref(inp), len(der))
    if not sess:
        return "the session does not parse"
    try:
        if lib.SSL_SESSION_is_resumable(sess) != 1:
            return "the session cannot be resumed"
        if lib.SSL_set_session(ssl_ptr, sess) != 1:
            return "SSL_set_session failed"
    finally:
        lib.SSL_SESSION_free(sess)  # SSL_set_session holds its own reference
    return ""
