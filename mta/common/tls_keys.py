"""common.tls_keys - TLS keys and certificates of main.cf, loaded into a context

SYNOPSIS
    from mta.common.tls_keys import TlsSetupError, load_server_keys, load_cert_pairs
    load_server_keys(ctx, cfg)              # smtpd; TlsSetupError names parameter and file
    load_cert_pairs(ctx, pairs)             # [(cert param, cert, key param, key)]: count loaded
    load_chain_files(ctx, param, files)     # one list of PEM chain files
    load_chain_pem(ctx, param, where, pem)  # the same, from their text

DESCRIPTION
    smtpd (its server certificates) and the smtp client (its client
    certificates) load keys the same way. With *_tls_chain_files set,
    each of its files holds PEM keys and certificates, every private
    key followed by its certificate chain (a key may also be alone in
    one file and its chain in the next; a certificate before the first
    key is an error); the other certificate parameters are then not
    used, as in Postfix. Otherwise the certificate pairs of older
    main.cf files are loaded side by side, each one that is set:

        smtpd_tls_cert_file    with smtpd_tls_key_file     (RSA)
        smtpd_tls_dcert_file   with smtpd_tls_dkey_file    (DSA)
        smtpd_tls_eccert_file  with smtpd_tls_eckey_file   (ECDSA)

    The key defaults to the certificate's own file. OpenSSL keeps one
    certificate per key type in a context, and the handshake picks the
    one the client's signature algorithms or cipher suites allow: an
    ECDSA-only client gets the ECDSA certificate, an RSA-only one the
    RSA certificate. At least one certificate is needed.

    A file that cannot be read, holds no key, or a key that does not
    match its certificate raises TlsSetupError naming the parameter and
    the file (mta check reports it; smtpd answers STARTTLS with 454).

SECURITY
    Key material is read once, by the smtpd process, before any client
    speaks; a chain file split into key groups goes through a private
    temporary file (mode 0600) removed at once.
"""

from __future__ import annotations

import os
import re
import ssl
import tempfile


class TlsSetupError(Exception):
    """A TLS context cannot be built; str() names the parameter and the file."""

    def __init__(self, param: str, path: str, reason: str) -> None:
        self.param = param
        self.path = path
        super().__init__(f"{param}: {path}: {reason}" if path else f"{param}: {reason}")


_KEY_RE = re.compile(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----")
# (certificate parameter, key parameter), in the order Postfix loads them
CERT_PAIRS = (
    ("smtpd_tls_cert_file", "smtpd_tls_key_file"),
    ("smtpd_tls_dcert_file", "smtpd_tls_dkey_file"),
    ("smtpd_tls_eccert_file", "smtpd_tls_eckey_file"),
)


def read_file(param: str, path: str) -> bytes:
    """The bytes of a key or certificate file; TlsSetupError naming param and path."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise TlsSetupError(param, path, exc.strerror or str(exc)) from None


def _load(ctx: ssl.SSLContext, param: str, path: str, cert: str, key: str | None) -> None:
    try:
        ctx.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        reason = exc.reason or str(exc)
        # a key of another type than the certificate: OpenSSL finds no certificate for it
        if any(r in reason.upper() for r in ("KEY_VALUES_MISMATCH", "NO_CERTIFICATE_ASSIGNED")):
            reason = "private key does not match the certificate"
        raise TlsSetupError(param, path, f"cannot load the key and certificate: {reason}") from None
    except OSError as exc:
        raise TlsSetupError(param, path, exc.strerror or str(exc)) from None


def load_chain_files(ctx: ssl.SSLContext, param: str, files: list[str]) -> None:
    """Load every key and its chain from files (smtpd_tls_chain_files syntax) into ctx."""
    blob = b"".join(read_file(param, f).rstrip(b"\n") + b"\n" for f in files)
    load_chain_pem(ctx, param, " ".join(files), blob)


def load_chain_pem(ctx: ssl.SSLContext, param: str, where: str, blob: bytes) -> None:
    """Load every key and the certificates after it from the PEM text blob into ctx."""
    starts = [m.start() for m in _KEY_RE.finditer(blob)]
    if not starts:
        raise TlsSetupError(param, where, "no private key found")
    if blob[: starts[0]].strip():
        raise TlsSetupError(param, where, "each private key must come before its certificates")
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else len(blob)
        fd, tmp = tempfile.mkstemp(prefix="mta-tls-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(blob[start:end])
            _load(ctx, param, where, tmp, None)
        finally:
            os.unlink(tmp)


def load_cert_pairs(ctx: ssl.SSLContext, pairs) -> int:
    """Load each (cert param, cert, key param, key) that is set; how many were."""
    loaded = 0
    for cert_param, cert, key_param, key in pairs:
        key = key or cert
        if not cert:
            if key:
                raise TlsSetupError(key_param, key, f"a key without a certificate ({cert_param})")
            continue
        read_file(cert_param, cert)
        read_file(key_param, key)
        _load(ctx, key_param if key != cert else cert_param, key, cert, key)
        loaded += 1
    return loaded


def load_server_keys(ctx: ssl.SSLContext, cfg) -> None:
    """smtpd's keys and certificates into ctx; TlsSetupError when one cannot be used."""
    chain = cfg.get_list("smtpd_tls_chain_files")
    if chain:
        load_chain_files(ctx, "smtpd_tls_chain_files", chain)
        return
    pairs = [(c, cfg.get(c).strip(), k, cfg.get(k).strip()) for c, k in CERT_PAIRS]
    if not load_cert_pairs(ctx, pairs):
        raise TlsSetupError("smtpd_tls_cert_file", "", "no server certificate configured")
