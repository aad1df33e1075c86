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
    returns 2). The functions come from common/tls_libssl.py. Keys have the 80-byte layout of common/tls_ticket.py:
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
import ssl

from mta.common import tls_libssl
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


def _callback(lib: ctypes.CDLL, keys: list[bytes]):
    """The ticket key callback over keys (current first); see the module docstring."""
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
    ptr, why = tls_libssl.ctx_pointer_why(ctx)
    if not ptr:
        return why
    cb = _callback(tls_libssl.libcrypto(), keys)
    fn = ctypes.cast(cb, ctypes.c_void_p)
    if tls_libssl.libssl().SSL_CTX_callback_ctrl(ptr, SSL_CTRL_SET_TLSEXT_TICKET_KEY_CB, fn) != 1:
        return "SSL_CTX_set_tlsext_ticket_key_cb failed"
    ctx._mta_ticket_cb = cb  # type: ignore[attr-defined]  # alive as long as ctx
    return ""
