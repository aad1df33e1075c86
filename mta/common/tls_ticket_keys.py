"""common.tls_ticket_keys - encrypt tickets with the current key, accept the previous one too

SYNOPSIS
    from mta.common.tls_ticket_keys import install_ticket_keys
    why = install_ticket_keys(ctx, current, previous)   # "" when installed

DESCRIPTION
    SSL_CTX_set_tlsext_ticket_keys (common/tls_ticket.py) holds one key:
    right after smtpd takes tlsmgr's new key, every ticket issued under
    the old one costs its client a full handshake. OpenSSL's ticket key
    callback (SSL_CTX_set_tlsext_ticket_key_cb) lets the server choose
    the key per ticket: install_ticket_keys() sets one, a ctypes
    function, that encrypts new tickets under current and decrypts
    tickets under current or previous; a ticket under previous is
    accepted and replaced by a new one under current (the callback
    returns 2). Keys have the 80-byte layout of common/tls_ticket.py:
    name, HMAC-SHA256 secret, AES-256-CBC key.

    The callback runs inside the handshake, with the GIL taken back by
    ctypes; anything unexpected in it answers "no such key" (a full
    handshake), never an exception into OpenSSL. When libcrypto or the
    callback cannot be set up, the caller falls back to the one-key
    call.

SECURITY
    Holds two ticket keys in memory: the callback object lives on the
    context it serves.
"""

from __future__ import annotations

import ctypes
import os
import ssl

from mta.common import tls_ticket
from mta.common.tls_ticket import TICKET_KEY_SIZE, TICKET_NAME_SIZE

SSL_CTRL_SET_TLSEXT_TICKET_KEY_CB = 72  # ssl.h
TICKET_IV_SIZE = 16  # bytes: the AES-CBC block
TICKET_RENEW = 2  # callback result: decrypted, but issue a new ticket under the current key

# int cb(SSL *s, unsigned char *key_name, unsigned char *iv,
#        EVP_CIPHER_CTX *ctx, HMAC_CTX *hctx, int enc)
TICKET_CB = ctypes.CFUNCTYPE(
    ctypes.c_int,
    ctypes.c_void_p,
    ctypes.c_void_p,
    ctypes.c_void_p,
    ctypes.c_void_p,
    ctypes.c_void_p,
    ctypes.c_int,
)

_crypto: ctypes.CDLL | None = None


def _libcrypto() -> ctypes.CDLL | None:
    global _crypto
    if _crypto is not None:
        return _crypto
    if tls_ticket.bind():
        return None
    try:
        with open("/proc/self/maps", "rb") as f:
            paths = [
                line.split()[5] for line in f if len(line.split()) >= 6 and b"/libcrypto.so" in line
            ]
        if not paths:
            return None
        lib = ctypes.CDLL(os.fsdecode(paths[0]), mode=os.RTLD_NOLOAD | os.RTLD_NOW)
        lib.EVP_aes_256_cbc.restype = ctypes.c_void_p
        lib.EVP_sha256.restype = ctypes.c_void_p
        lib.EVP_EncryptInit_ex.argtypes = [ctypes.c_void_p] * 5
        lib.EVP_DecryptInit_ex.argtypes = [ctypes.c_void_p] * 5
        lib.HMAC_Init_ex.argtypes = [
            ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]  # fmt: skip
        lib.RAND_bytes.argtypes = [ctypes.c_void_p, ctypes.c_int]
        ssl_lib = tls_ticket._lib
        ssl_lib.SSL_CTX_callback_ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, TICKET_CB]
        ssl_lib.SSL_CTX_callback_ctrl.restype = ctypes.c_long
    except (OSError, AttributeError, IndexError):
        return None
    _crypto = lib
    return lib


def _callback(keys: list[bytes]):
    """The ticket key callback over keys (current first); see the module docstring."""
    lib = _crypto
    cipher, digest = lib.EVP_aes_256_cbc(), lib.EVP_sha256()

    def init(key: bytes, iv, cctx, hctx, enc: int) -> bool:
        hmac, aes = key[16:48], key[48:80]
        if lib.HMAC_Init_ex(hctx, hmac, 32, digest, None) != 1:
            return False
        start = lib.EVP_EncryptInit_ex if enc else lib.EVP_DecryptInit_ex
        return start(cctx, cipher, None, aes, iv) == 1

    def cb(_ssl, key_name, iv, cctx, hctx, enc):
        try:
            if enc:
                current = keys[0]
                if lib.RAND_bytes(iv, TICKET_IV_SIZE) != 1:
                    return -1
                ctypes.memmove(key_name, current[:TICKET_NAME_SIZE], TICKET_NAME_SIZE)
                return 1 if init(current, iv, cctx, hctx, 1) else -1
            name = ctypes.string_at(key_name, TICKET_NAME_SIZE)
            for n, key in enumerate(keys):
                if key[:TICKET_NAME_SIZE] == name:
                    if not init(key, iv, cctx, hctx, 0):
                        return 0
                    return 1 if n == 0 else TICKET_RENEW
            return 0  # not ours (any more): a full handshake
        except Exception:  # noqa: BLE001 - never an exception into OpenSSL
            return 0

    return TICKET_CB(cb)


def install_ticket_keys(ctx: ssl.SSLContext, current: bytes, previous: bytes | None) -> str:
    """Encrypt tickets of ctx under current, accept current and previous; "" or why not."""
    keys = [k for k in (current, previous) if k]
    if any(len(k) != TICKET_KEY_SIZE for k in keys):
        return f"ticket key of the wrong size (not {TICKET_KEY_SIZE} bytes)"
    if _libcrypto() is None:
        return "libcrypto cannot be bound"
    ptr = tls_ticket._ctx_pointer(ctx)
    if not ptr:
        return "the SSL_CTX pointer of ssl.SSLContext does not check out"
    cb = _callback(keys)
    if tls_ticket._lib.SSL_CTX_callback_ctrl(ptr, SSL_CTRL_SET_TLSEXT_TICKET_KEY_CB, cb) != 1:
        return "SSL_CTX_set_tlsext_ticket_key_cb failed"
    ctx._mta_ticket_cb = cb  # type: ignore[attr-defined]  # alive as long as ctx
    return ""
