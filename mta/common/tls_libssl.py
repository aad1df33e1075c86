"""common.tls_libssl - the OpenSSL calls Python's ssl module lacks, through ctypes

SYNOPSIS
    from mta.common import tls_libssl
    why = tls_libssl.bind()              # at start, while still root; "" when bound
    why = tls_libssl.why_not()           # "" when bound, else why not
    why = tls_libssl.unavailable()       # "" when a context's pointer checks out here
    lib, crypto = tls_libssl.libssl(), tls_libssl.libcrypto()   # None when not bound
    ptr = tls_libssl.ctx_pointer(ctx)    # SSL_CTX* of an ssl.SSLContext, 0 when unsure
    ptr, why = tls_libssl.ctx_pointer_why(ctx)   # the same, with the reason when 0
    ptr = tls_libssl.ssl_pointer(sslobj) # SSL* of an SSLObject / SSLSocket, 0 when unsure
    usable = tls_libssl.set_groups(ctx, ["X25519", "nosuch"])   # ["X25519"]; None: no pointer
    why = tls_libssl.set_verify_depth(ctx, 2)    # Postfix's depth; "" when set

DESCRIPTION
    Several features (shared ticket keys, sessions carried between
    processes, client certificates that need not verify, a list of key
    exchange groups, the verification depth) need OpenSSL functions that
    Python's ssl module does not offer. This module is the one place
    that loads them: the libssl and libcrypto that Python's _ssl module
    is linked to are found in /proc/self/maps once _ssl is imported, and
    opened with RTLD_NOLOAD, so a second copy of OpenSSL is never loaded.
    Every function any caller uses has its argument and result types
    declared here, in bind().

    bind() must run before an unprivileged service gives up root: after
    a process changes its user, /proc/self/maps belongs to root and can
    no longer be read. why_not() gives the reason binding failed ("" when
    bound); unavailable() also checks the pointer of a fresh context.

    Pointers into Python objects are never trusted blindly. The SSL_CTX*
    of a PySSLContext (right after PyObject_HEAD) counts only when
    SSL_CTX_get_options() and SSL_CTX_get_verify_mode() through it read
    what ctx.options and ctx.verify_mode say (the peer and fail-if-no-
    certificate bits); the SSL* of a connection
    (the second pointer of _ssl._SSLSocket, after the socket) only when
    the object's context pointer is that connection's context and
    SSL_get_SSL_CTX() of the SSL* is that context's checked SSL_CTX*.
    Anything that does not check out gives 0, and the caller does
    without (see each caller for what that costs).

    set_groups() tries each name on its own (SSL_CTX_set1_groups_list,
    the SSL_CTX_ctrl SSL_CTRL_SET_GROUPS_LIST) and then sets the list of
    the ones OpenSSL took, in their order: unknown names are skipped.
    set_verify_depth() takes Postfix's depth (1: the certificate is
    signed by a trusted authority itself) and gives OpenSSL one less,
    since OpenSSL does not count the trust anchor.

SECURITY
    Writes into OpenSSL's structures only through checked pointers;
    never frees what it did not get from d2i, never allocates in a
    context. Sees no network input itself.
"""

from __future__ import annotations

import ctypes
import os
import ssl

SSL_CTRL_SET_GROUPS_LIST = 92  # ssl.h: SSL_CTX_set1_groups_list() is this SSL_CTX_ctrl()

_vp, _int, _long = ctypes.c_void_p, ctypes.c_int, ctypes.c_long
# name: (restype, argtypes)
LIBSSL_FUNCS: dict[str, tuple] = {
    "SSL_CTX_ctrl": (_long, [_vp, _int, _long, _vp]),
    "SSL_CTX_callback_ctrl": (_long, [_vp, _int, _vp]),
    "SSL_CTX_get_options": (ctypes.c_uint64, [_vp]),
    "SSL_CTX_get_verify_mode": (_int, [_vp]),
    "SSL_CTX_set_verify": (None, [_vp, _int, _vp]),
    "SSL_CTX_set_verify_depth": (None, [_vp, _int]),
    "SSL_CTX_get_verify_depth": (_int, [_vp]),
    "SSL_CTX_set_timeout": (_long, [_vp, _long]),
    "SSL_CTX_get_timeout": (_long, [_vp]),
    "SSL_get_SSL_CTX": (_vp, [_vp]),
    "SSL_get_verify_result": (_long, [_vp]),
    "SSL_set_session": (_int, [_vp, _vp]),
    "SSL_SESSION_get_time": (_long, [_vp]),
    "SSL_SESSION_get_timeout": (_long, [_vp]),
    "SSL_SESSION_is_resumable": (_int, [_vp]),
    "SSL_SESSION_free": (None, [_vp]),
    "i2d_SSL_SESSION": (_int, [_vp, _vp]),
    "d2i_SSL_SESSION": (_vp, [_vp, _vp, _long]),
    "SSL_SESSION_get_id": (_vp, [_vp, ctypes.POINTER(ctypes.c_uint)]),
    "SSL_CTX_sess_set_new_cb": (None, [_vp, _vp]),
    "SSL_CTX_sess_set_get_cb": (None, [_vp, _vp]),
    "SSL_CTX_sess_set_remove_cb": (None, [_vp, _vp]),
    "SSL_CTX_set_session_id_context": (_int, [_vp, ctypes.c_char_p, ctypes.c_uint]),
    "SSL_version": (_int, [_vp]),
    "SSL_get_options": (ctypes.c_uint64, [_vp]),
}
LIBCRYPTO_FUNCS: dict[str, tuple] = {
    "ERR_clear_error": (None, []),
    "EVP_aes_256_cbc": (_vp, []),
    "EVP_sha256": (_vp, []),
    "EVP_EncryptInit_ex": (_int, [_vp] * 5),
    "EVP_DecryptInit_ex": (_int, [_vp] * 5),
    "HMAC_Init_ex": (_int, [_vp, _vp, _int, _vp, _vp]),
    "RAND_bytes": (_int, [_vp, _int]),
}

# ssl.h SSL_VERIFY_PEER (1) and SSL_VERIFY_FAIL_IF_NO_PEER_CERT (2) of each verify_mode
_VERIFY_MODE_BITS = {ssl.CERT_NONE: 0, ssl.CERT_OPTIONAL: 1, ssl.CERT_REQUIRED: 3}

_ssl_lib: ctypes.CDLL | None = None
_crypto_lib: ctypes.CDLL | None = None
_why_not: str | None = None  # None: not looked at yet


def _mapped_paths() -> tuple[str, str]:
    """(libssl, libcrypto) mapped into this process by Python's _ssl module."""
    import _ssl  # noqa: F401 - makes sure the libraries are mapped

    found = {b"/libssl.so": "", b"/libcrypto.so": ""}
    with open("/proc/self/maps", "rb") as f:
        for line in f:
            fields = line.split()
            if len(fields) < 6:
                continue
            for name, path in found.items():
                if not path and name in fields[5]:
                    found[name] = os.fsdecode(fields[5])
    return found[b"/libssl.so"], found[b"/libcrypto.so"]


def _open(path: str, funcs: dict[str, tuple]) -> ctypes.CDLL:
    lib = ctypes.CDLL(path, mode=os.RTLD_NOLOAD | os.RTLD_NOW)  # never a second copy
    for name, (restype, argtypes) in funcs.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes
    return lib


def bind() -> str:
    """Find and bind libssl and libcrypto (call it while still root); "" or why not."""
    global _ssl_lib, _crypto_lib, _why_not
    if _why_not is not None:
        return _why_not
    try:
        ssl_path, crypto_path = _mapped_paths()
    except OSError as exc:
        _why_not = f"cannot read /proc/self/maps: {exc.strerror or exc}"
        return _why_not
    if not ssl_path or not crypto_path:
        _why_not = "no libssl and libcrypto mapped into the process"
        return _why_not
    try:
        _ssl_lib = _open(ssl_path, LIBSSL_FUNCS)
        _crypto_lib = _open(crypto_path, LIBCRYPTO_FUNCS)
    except (OSError, AttributeError, ValueError) as exc:
        _ssl_lib = _crypto_lib = None
        _why_not = f"cannot bind libssl: {exc}"
        return _why_not
    _why_not = ""
    return ""


def why_not() -> str:
    """ "" when the libraries are bound, else why not."""
    return bind()


def unavailable() -> str:
    """ "" when the SSL_CTX pointer of an ssl.SSLContext checks out here, else the reason."""
    why = bind()
    if why:
        return why
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    return "" if ctx_pointer(probe) else "the SSL_CTX pointer of ssl.SSLContext does not check out"


def libssl() -> ctypes.CDLL | None:
    bind()
    return _ssl_lib


def libcrypto() -> ctypes.CDLL | None:
    bind()
    return _crypto_lib


def object_field(obj: object, index: int) -> int:
    """The index-th pointer after PyObject_HEAD of obj (0 when NULL)."""
    size = ctypes.sizeof(ctypes.c_void_p)
    return ctypes.c_void_p.from_address(id(obj) + object.__basicsize__ + size * index).value or 0


def ctx_pointer(ctx: ssl.SSLContext) -> int:
    """The SSL_CTX* of ctx, checked against ctx.options; 0 when it does not check out."""
    if bind() or not isinstance(ctx, ssl.SSLContext):
        return 0
    ptr = object_field(ctx, 0)  # PySSLContext: PyObject_HEAD, then SSL_CTX *ctx
    if not ptr:
        return 0
    if _ssl_lib.SSL_CTX_get_options(ptr) != int(ctx.options):
        return 0
    if _ssl_lib.SSL_CTX_get_verify_mode(ptr) & 3 != _VERIFY_MODE_BITS.get(ctx.verify_mode):
        return 0
    return ptr


def ctx_pointer_why(ctx: ssl.SSLContext) -> tuple[int, str]:
    """(the checked SSL_CTX* of ctx, "") or (0, why it cannot be had)."""
    ptr = ctx_pointer(ctx)
    if ptr:
        return ptr, ""
    return 0, why_not() or "the SSL_CTX pointer of ssl.SSLContext does not check out"


def ssl_pointer(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> int:
    """The SSL* of a connection, checked to belong to its context; 0 when it does not."""
    inner = getattr(ssl_object, "_sslobj", None)
    context = getattr(ssl_object, "context", None)
    if inner is None or context is None:
        return 0
    ctx_ptr = ctx_pointer(context)
    if not ctx_ptr:
        return 0
    # _ssl._SSLSocket: PyObject_HEAD, PyObject *Socket, SSL *ssl, PySSLContext *ctx
    ptr = object_field(inner, 1)
    if not ptr or object_field(inner, 2) != id(context):
        return 0
    if _ssl_lib.SSL_get_SSL_CTX(ptr) != ctx_ptr:
        return 0
    return ptr


def _set_groups_list(ptr: int, names: str) -> bool:
    ok = _ssl_lib.SSL_CTX_ctrl(ptr, SSL_CTRL_SET_GROUPS_LIST, 0, names.encode("ascii")) == 1
    if not ok:
        _crypto_lib.ERR_clear_error()  # the failed call's error must not reach Python's next one
    return ok


def set_groups(ctx: ssl.SSLContext, names: list[str]) -> list[str] | None:
    """Offer the groups (curves) of names that OpenSSL knows, in order; the ones set
    ([] when none), or None when ctx's pointer does not check out (nothing set)."""
    ptr = ctx_pointer(ctx)
    if not ptr:
        return None
    wanted = [n for n in names if n.isascii() and n.replace("-", "").isalnum()]
    usable = [n for n in wanted if _set_groups_list(ptr, n)]
    if usable and _set_groups_list(ptr, ":".join(usable)):
        return usable
    return []


def set_verify_depth(ctx: ssl.SSLContext, depth: int) -> str:
    """Verify chains of ctx up to Postfix's depth (1: signed by a trust anchor itself,
    0 is taken as 1); "" when set and read back, else why not."""
    ptr, why = ctx_pointer_why(ctx)
    if not ptr:
        return why
    wanted = max(int(depth) - 1, 0)  # OpenSSL does not count the trust anchor
    _ssl_lib.SSL_CTX_set_verify_depth(ptr, wanted)
    if _ssl_lib.SSL_CTX_get_verify_depth(ptr) != wanted:
        return "SSL_CTX_set_verify_depth did not take"
    return ""


def verify_depth(ctx: ssl.SSLContext) -> int:
    """OpenSSL's verify depth of ctx; -1 when it cannot be read."""
    ptr = ctx_pointer(ctx)
    return _ssl_lib.SSL_CTX_get_verify_depth(ptr) if ptr else -1
