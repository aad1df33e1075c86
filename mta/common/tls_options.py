"""common.tls_options - tls_ssl_options and tls_disable_workarounds, as OpenSSL option bits

SYNOPSIS
    from mta.common.tls_options import ssl_options, disabled_workarounds
    ctx.options |= ssl_options("NO_TICKET, prioritize_chacha")
    ctx.options &= ~disabled_workarounds("TLSEXT_PADDING")

DESCRIPTION
    Both parameters take a list of OpenSSL option names (the SSL_OP_
    macro without its prefix, in any case, separated by white space or
    commas) or one hexadecimal mask starting with "0x", as in Postfix.

    ssl_options() gives the bits tls_ssl_options turns on. The names
    are Postfix's: ENABLE_MIDDLEBOX_COMPAT, LEGACY_SERVER_CONNECT,
    NO_TICKET, NO_COMPRESSION, NO_RENEGOTIATION,
    NO_SESSION_RESUMPTION_ON_RENEGOTIATION, PRIORITIZE_CHACHA. A mask
    may not hold the protocol or the server cipher preference bits:
    other parameters decide those (*_tls_protocols,
    tls_preempt_cipherlist).

    disabled_workarounds() gives the bug workarounds
    tls_disable_workarounds turns off, bits of OpenSSL's SSL_OP_ALL. The
    names are those Postfix knows; workarounds that OpenSSL 3 no
    longer has (MICROSOFT_SESS_ID_BUG, TLS_D5_BUG ...) are accepted and
    stand for no bit. A mask's bits outside SSL_OP_ALL are ignored, as
    Postfix ignores them.

    Both raise ValueError for an unknown name or a bad mask.

SECURITY
    Pure functions over administrator settings.
"""

from __future__ import annotations

import re

# OpenSSL 3 option bits (ssl.h SSL_OP_*)
OP_LEGACY_SERVER_CONNECT = 1 << 2
OP_TLSEXT_PADDING = 1 << 4
OP_SAFARI_ECDHE_ECDSA_BUG = 1 << 6
OP_DONT_INSERT_EMPTY_FRAGMENTS = 1 << 11
OP_NO_TICKET = 1 << 14
OP_NO_SESSION_RESUMPTION_ON_RENEGOTIATION = 1 << 16
OP_NO_COMPRESSION = 1 << 17
OP_ENABLE_MIDDLEBOX_COMPAT = 1 << 20
OP_PRIORITIZE_CHACHA = 1 << 21
OP_CIPHER_SERVER_PREFERENCE = 1 << 22
OP_TLS_ROLLBACK_BUG = 1 << 23
OP_NO_PROTOCOLS = 0x1F << 25  # NO_SSLv3, NO_TLSv1, NO_TLSv1_2, NO_TLSv1_1, NO_TLSv1_3
OP_NO_RENEGOTIATION = 1 << 30
OP_CRYPTOPRO_TLSEXT_BUG = 1 << 31
OP_ALL = (
    OP_CRYPTOPRO_TLSEXT_BUG
    | OP_DONT_INSERT_EMPTY_FRAGMENTS
    | OP_LEGACY_SERVER_CONNECT
    | OP_TLSEXT_PADDING
    | OP_SAFARI_ECDHE_ECDSA_BUG
)

SSL_OPTIONS: dict[str, int] = {
    "ENABLE_MIDDLEBOX_COMPAT": OP_ENABLE_MIDDLEBOX_COMPAT,
    "LEGACY_SERVER_CONNECT": OP_LEGACY_SERVER_CONNECT,
    "NO_TICKET": OP_NO_TICKET,
    "NO_COMPRESSION": OP_NO_COMPRESSION,
    "NO_RENEGOTIATION": OP_NO_RENEGOTIATION,
    "NO_SESSION_RESUMPTION_ON_RENEGOTIATION": OP_NO_SESSION_RESUMPTION_ON_RENEGOTIATION,
    "PRIORITIZE_CHACHA": OP_PRIORITIZE_CHACHA,
}
WORKAROUNDS: dict[str, int] = {
    "CRYPTOPRO_TLSEXT_BUG": OP_CRYPTOPRO_TLSEXT_BUG,
    "DONT_INSERT_EMPTY_FRAGMENTS": OP_DONT_INSERT_EMPTY_FRAGMENTS,
    "LEGACY_SERVER_CONNECT": OP_LEGACY_SERVER_CONNECT,
    "TLSEXT_PADDING": OP_TLSEXT_PADDING,
    "TLS_ROLLBACK_BUG": OP_TLS_ROLLBACK_BUG,
    # gone from OpenSSL: no bit left to clear
    "MICROSOFT_BIG_SSLV3_BUFFER": 0,
    "MICROSOFT_SESS_ID_BUG": 0,
    "MSIE_SSLV2_RSA_PADDING": 0,
    "CVE-2005-2969": 0,
    "NETSCAPE_CHALLENGE_BUG": 0,
    "NETSCAPE_REUSE_CIPHER_CHANGE_BUG": 0,
    "CVE-2010-4180": 0,
    "SSLEAY_080_CLIENT_DH_BUG": 0,
    "SSLREF2_REUSE_CERT_TYPE_BUG": 0,
    "TLS_BLOCK_PADDING_BUG": 0,
    "TLS_D5_BUG": 0,
}
_SEP = re.compile(r"[\s,]+")


def _bits(value: str, names: dict[str, int], what: str) -> tuple[int, bool]:
    """(bits, whether value was a 0x mask)."""
    words = [w for w in _SEP.split(value.strip()) if w]
    if len(words) == 1 and words[0].lower().startswith("0x"):
        try:
            return int(words[0], 16), True
        except ValueError:
            raise ValueError(f"bad hexadecimal mask: {words[0]}") from None
    bits = 0
    for word in words:
        bit = names.get(word.upper())
        if bit is None:
            raise ValueError(f"unknown {what}: {word} (expected {', '.join(names)} or 0xMASK)")
        bits |= bit
    return bits, False


def ssl_options(value: str) -> int:
    """The OpenSSL option bits tls_ssl_options turns on; ValueError when value is bad."""
    bits, _ = _bits(value, SSL_OPTIONS, "TLS option")
    taken = bits & (OP_NO_PROTOCOLS | OP_CIPHER_SERVER_PREFERENCE)
    if taken:
        raise ValueError(
            f"mask {bits:#x} holds bits {taken:#x} that the protocol and cipher "
            "preference parameters control"
        )
    return bits


def disabled_workarounds(value: str) -> int:
    """The OpenSSL workaround bits tls_disable_workarounds turns off; ValueError when bad."""
    bits, _ = _bits(value, WORKAROUNDS, "TLS bug workaround")
    return bits & (OP_ALL | OP_TLS_ROLLBACK_BUG)
