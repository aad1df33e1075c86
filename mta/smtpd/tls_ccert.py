"""smtpd.tls_ccert - client certificates, and what smtpd knows of a TLS session

SYNOPSIS
    from mta.smtpd.tls_ccert import setup_client_certs, peer_of, received_lines
    setup_client_certs(ctx, cfg)              # ask_ccert / req_ccert, CAfile, CApath
    peer = peer_of(ssl_object, "sha256")      # TlsPeer
    log.info(peer.established(client))        # "Trusted TLS connection established from ..."
    text = received_lines(peer, asked=True)   # the Received: comment lines

DESCRIPTION
    smtpd asks for a client certificate when smtpd_tls_ask_ccert is
    set, or at level encrypt (or in wrapper mode) with
    smtpd_tls_req_ccert. The authorities in smtpd_tls_CAfile and
    smtpd_tls_CApath decide whether a certificate is trusted; as in
    Postfix, a certificate that does not verify still completes the
    handshake, as "Untrusted": fingerprint restrictions
    (permit_tls_clientcerts) work with self-signed certificates.
    smtpd_tls_ccert_verifydepth bounds the chain: 1 lets a certificate
    that an authority in the CAfile signed verify, a longer chain is
    then Untrusted.

    Python's ssl module cannot say "verify, but do not fail", so the
    OpenSSL verify callback (and the depth) is set through ctypes on
    the context's SSL_CTX (common/tls_libssl.py checks the pointer
    before it is touched); where that is not possible a certificate that does not
    verify fails the handshake, which is stricter, never weaker.

    TlsPeer holds the protocol, the cipher, and the client certificate:
    its CommonName, its issuer's, whether it verified, and its
    fingerprints under smtpd_tls_fingerprint_digest (common/tls_cert.py).

SECURITY
    Sees certificates from untrusted clients; parses them with a
    bounded DER reader. Runs as smtpd.
"""

from __future__ import annotations

import ctypes
import hashlib
import ssl
import weakref
from dataclasses import dataclass

from mta import log
from mta.common import tls_libssl
from mta.common.tls_cert import CertError, cert_fingerprint, issuer_cn, pkey_fingerprint, subject_cn
from mta.config.errors import ConfigError
from mta.smtpd.tls_params import TlsSetupError, asks_for_certificate

_SSL_VERIFY_PEER = 0x01
_VERIFY_CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_void_p)
_accept_any = _VERIFY_CB(lambda ok, store: 1)  # kept alive as long as the module
# the contexts whose verify callback accepts any certificate
_verify_any: weakref.WeakSet = weakref.WeakSet()


def setup_client_certs(ctx: ssl.SSLContext, cfg) -> None:
    """Trusted authorities, and the certificate request when asked; TlsSetupError on a bad file."""
    cafile = cfg.get("smtpd_tls_CAfile").strip()
    capath = cfg.get("smtpd_tls_CApath").strip()
    for param, path in (("smtpd_tls_CAfile", cafile), ("smtpd_tls_CApath", capath)):
        if not path:
            continue
        try:
            ctx.load_verify_locations(
                cafile=path if param.endswith("CAfile") else None,
                capath=path if param.endswith("CApath") else None,
            )
        except ssl.SSLError as exc:
            raise TlsSetupError(param, path, f"no certificates: {exc.reason or exc}") from None
        except OSError as exc:
            raise TlsSetupError(param, path, exc.strerror or str(exc)) from None
    digest = cfg.get("smtpd_tls_fingerprint_digest").strip()
    try:
        hashlib.new(digest.lower())
    except ValueError:
        raise TlsSetupError(
            "smtpd_tls_fingerprint_digest", "", f"unknown digest: {digest}"
        ) from None
    if not asks_for_certificate(cfg):
        return
    ctx.verify_mode = ssl.CERT_OPTIONAL
    try:
        depth = cfg.get_int("smtpd_tls_ccert_verifydepth")
    except ConfigError as exc:  # mta check reports the value; here: no TLS rather than a crash
        raise TlsSetupError("smtpd_tls_ccert_verifydepth", "", exc.message) from None
    ptr = tls_libssl.ctx_pointer(ctx)
    if not ptr or tls_libssl.set_verify_depth(ctx, depth):
        log.warning(
            "cannot accept client certificates that do not verify; "
            "such a client's TLS handshake fails; smtpd_tls_ccert_verifydepth = %d "
            "is not enforced",
            depth,
        )
        return
    accept_any = ctypes.cast(_accept_any, ctypes.c_void_p)
    tls_libssl.libssl().SSL_CTX_set_verify(ptr, _SSL_VERIFY_PEER, accept_any)
    _verify_any.add(ctx)


def _verified(ssl_object) -> bool:
    """Did the client certificate of this connection verify against the authorities?"""
    if ssl_object.context not in _verify_any:
        return True  # OpenSSL's own check ran: a certificate that failed ended the handshake
    ssl_ptr = tls_libssl.ssl_pointer(ssl_object)
    if not ssl_ptr:
        return False  # cannot tell: not trusted
    return tls_libssl.libssl().SSL_get_verify_result(ssl_ptr) == 0


@dataclass
class TlsPeer:
    """What one TLS session tells smtpd about itself and the client."""

    protocol: str
    cipher: str
    bits: int
    cert: bytes | None = None  # DER of the client certificate
    trusted: bool = False
    peer_cn: str = ""
    issuer_cn: str = ""
    fingerprint: str = ""
    pkey_fingerprint: str = ""
    reused: bool = False  # a resumed session (not counted as a new one)

    @property
    def present(self) -> bool:
        return self.cert is not None

    def kind(self) -> str:
        if not self.present:
            return "Anonymous"
        return "Trusted" if self.trusted else "Untrusted"

    def established(self, client: str) -> str:
        """The log line of a completed handshake, in Postfix's form."""
        return (
            f"{self.kind()} TLS connection established from {client}: "
            f"{self.protocol} with cipher {self.cipher} ({self.bits}/{self.bits} bits)"
        )

    def cert_text(self, client: str) -> str:
        """smtpd_tls_loglevel 2: the client certificate's names and fingerprints."""
        return (
            f"{client}: subject_CN={self.peer_cn}, issuer={self.issuer_cn}, "
            f"fingerprint={self.fingerprint}, pkey_fingerprint={self.pkey_fingerprint}"
        )


def peer_of(ssl_object, digest: str) -> TlsPeer:
    """The TlsPeer of a completed handshake."""
    if ssl_object is None:  # not expected of a completed handshake; nothing is trusted
        return TlsPeer("unknown", "unknown", 0)
    name, version, bits = ssl_object.cipher()
    peer = TlsPeer(ssl_object.version() or version, name, bits or 0)
    peer.reused = bool(getattr(ssl_object, "session_reused", False))
    der = ssl_object.getpeercert(binary_form=True)
    if der:
        peer.cert = der
        peer.trusted = _verified(ssl_object)
        try:
            peer.peer_cn, peer.issuer_cn = subject_cn(der), issuer_cn(der)
            peer.fingerprint = cert_fingerprint(der, digest)
            peer.pkey_fingerprint = pkey_fingerprint(der, digest)
        except CertError:
            peer.trusted = False
    return peer


def _quoted(text: str) -> str:
    return "".join(c if c.isprintable() and c not in '"\\' else "?" for c in text)


def received_lines(peer: TlsPeer, asked: bool) -> str:
    """smtpd_tls_received_header: the comment lines for Received:, joined with "\\n"."""
    lines = [f"(using {peer.protocol} with cipher {peer.cipher} ({peer.bits}/{peer.bits} bits))"]
    if peer.present:
        state = "verified OK" if peer.trusted else "not verified"
        lines.append(
            f'(Client CN "{_quoted(peer.peer_cn)}", Issuer "{_quoted(peer.issuer_cn)}" ({state}))'
        )
    elif asked:
        lines.append("(Client did not present a certificate)")
    else:
        lines.append("(No client certificate requested)")
    return "\n".join(lines)
