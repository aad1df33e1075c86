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
    that Python's _ssl is linked to (common/tls_libssl.py binds it).

    Pointers are checked before use: the SSL* of an SSLObject must
    belong to the SSL_CTX* of its context (tls_libssl.ssl_pointer), and the
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

from mta.common import tls_libssl

SESSION_DER_MAX = 16384  # bytes of one serialized session, at most


def _session_pointer(session: ssl.SSLSession) -> int:
    """The SSL_SESSION* of an SSLSession, checked; 0 when it does not check out."""
    if not isinstance(session, ssl.SSLSession):
        return 0
    lib = tls_libssl.libssl()
    if lib is None:
        return 0
    ptr = tls_libssl.object_field(session, 0)  # PySSLSession: PyObject_HEAD, SSL_SESSION *
    if not ptr or lib.SSL_SESSION_get_time(ptr) != session.time:
        return 0
    if lib.SSL_SESSION_get_timeout(ptr) != session.timeout:
        return 0
    return ptr


def session_der(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> bytes:
    """The session of a connection in DER form; b"" when it cannot be had."""
    lib = tls_libssl.libssl()
    if lib is None:
        return b""
    session = ssl_object.session
    ptr = _session_pointer(session) if session is not None else 0
    if not ptr or lib.SSL_SESSION_is_resumable(ptr) != 1:
        return b""
    return pointer_der(ptr)


def pointer_der(ptr: int) -> bytes:
    """The SSL_SESSION at ptr in DER form (libssl bound); b"" when it cannot be had
    or is larger than SESSION_DER_MAX."""
    lib = tls_libssl.libssl()
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
    lib = tls_libssl.libssl()
    if lib is None:
        return "libssl cannot be used"
    ssl_ptr = tls_libssl.ssl_pointer(ssl_object)
    if not ssl_ptr:
        return "the SSL pointer does not check out"
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
