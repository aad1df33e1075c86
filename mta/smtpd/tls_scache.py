"""smtpd.tls_scache - smtpd's TLS session-id cache, kept by tlsmgr for every smtpd process

SYNOPSIS
    from mta.smtpd.tls_scache import setup_server_cache
    cache = setup_server_cache(cfg, server.tls_context)   # None: none kept
    cache.close()

DESCRIPTION
    A TLS 1.2 client that uses no session tickets (or meets a server
    with tickets off) resumes by session id: the server must find the
    session under that id. OpenSSL keeps its sessions in the memory of
    one process, so a client that lands on another smtpd process gets
    a full handshake. With smtpd_tls_session_cache_database set (an
    lmdb: table; hash: and btree: name the same FILE.lmdb), as in
    Postfix, the server context keeps no session of its own
    (SSL_SESS_CACHE_SERVER | SSL_SESS_CACHE_NO_INTERNAL |
    SSL_SESS_CACHE_NO_AUTO_CLEAR) and OpenSSL's session callbacks,
    set through ctypes on the libssl of Python's _ssl
    (common/tls_libssl.py), go to tlsmgr's "smtpd" cache
    (tlsmgr/scache.py), keyed by the session id in hexadecimal:

        new session     its DER form (i2d_SSL_SESSION) is stored; OpenSSL
                        keeps its own reference (the callback returns 0)
        lookup          asked of tlsmgr while the handshake waits
                        (common/tlsmgr_clnt.py TlsmgrBlockingClient, at
                        most BLOCKING_LIMIT seconds); read back with
                        d2i_SSL_SESSION, handed to OpenSSL (*copy = 0)
        removal         deleted from tlsmgr's cache

    TLS 1.3 sessions under stateless tickets are not stored: the
    ticket carries them (smtpd/tls_tickets.py). Sessions last
    smtpd_tls_session_cache_timeout, clamped as Postfix does; 0 or
    less keeps no cache at all (smtpd/tls_tickets.py turns OpenSSL's
    off). An empty smtpd_tls_session_cache_database keeps OpenSSL's
    per-process cache.

    The session id context, which OpenSSL checks before it resumes a
    session (or accepts a ticket), becomes a digest of the process name
    and the context's settings (common/tls_session.py context_digest:
    client certificate verification, protocols, options, ciphers,
    trusted authorities), so that a session made under one policy is
    never resumed under another, while the smtpd services of the same
    TLS settings (and their processes) share their sessions, as they
    share tickets. Contexts chosen by tls_server_sni_maps keep their
    own: their sessions resume within one process only.

    When the ctypes route cannot be used here, smtpd warns and keeps
    OpenSSL's own cache. A tlsmgr that cannot be reached, an entry
    that does not parse or belongs to another id: a cache miss and a
    full handshake (one warning until tlsmgr answers again).

SECURITY
    Sessions hold their master secrets; they travel only over the
    private tlsmgr socket. Session ids come from the client (at most
    SSL_MAX_SSL_SESSION_ID_LENGTH bytes, checked); DER from tlsmgr
    goes through OpenSSL's parser and must carry the id asked for.
    Callbacks never raise into OpenSSL: any failure is a miss.
"""

from __future__ import annotations

import ctypes
import hashlib
import ssl

from mta import log
from mta.common import tls_libssl
from mta.common.tls_serial import SESSION_DER_MAX, pointer_der
from mta.common.tls_session import context_digest
from mta.common.tls_ticket import SSL_CTRL_SET_SESS_CACHE_MODE, cache_timeout
from mta.common.tlsmgr_clnt import TlsmgrBlockingClient

SCACHE_TYPE = "smtpd"  # tlsmgr's cache_type for smtpd's sessions
SSL_SESS_CACHE_SERVER = 0x0002  # ssl.h
SSL_SESS_CACHE_NO_AUTO_CLEAR = 0x0080  # ssl.h
SSL_SESS_CACHE_NO_INTERNAL = 0x0100 | 0x0200  # ssl.h: no internal lookup, no internal store
SSL_CTRL_GET_SESS_CACHE_MODE = 45  # ssl.h
SSL_MAX_SID_CTX_LENGTH = 32  # ssl.h
SSL_MAX_SSL_SESSION_ID_LENGTH = 32  # ssl.h
TLS1_3_VERSION = 0x0304  # prov_ssl.h
SCACHE_MODE = SSL_SESS_CACHE_SERVER | SSL_SESS_CACHE_NO_INTERNAL | SSL_SESS_CACHE_NO_AUTO_CLEAR

NEW_CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)
GET_CB = ctypes.CFUNCTYPE(
    ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_int)
)
REMOVE_CB = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)


def _session_id(sess: int) -> bytes:
    length = ctypes.c_uint(0)
    ptr = tls_libssl.libssl().SSL_SESSION_get_id(sess, ctypes.byref(length))
    if not ptr or not 0 < length.value <= SSL_MAX_SSL_SESSION_ID_LENGTH:
        return b""
    return ctypes.string_at(ptr, length.value)


def session_id_context(ctx: ssl.SSLContext) -> bytes:
    """The session id context of smtpd's server context: 32 bytes of digest."""
    text = f"mta-smtpd\n{context_digest(ctx)}".encode()
    return hashlib.sha256(text).digest()[:SSL_MAX_SID_CTX_LENGTH]


class ServerSessionCache:
    """OpenSSL's server session callbacks, answered by tlsmgr; see the module docstring."""

    def __init__(self, client: TlsmgrBlockingClient) -> None:
        self.client = client
        self.warned = False
        self.stored = self.found = self.missed = 0  # counters, for the tests and debugging
        # the CFUNCTYPE objects live as long as this object, which the context keeps
        self.new_cb = NEW_CB(self._new)
        self.get_cb = GET_CB(self._get)
        self.remove_cb = REMOVE_CB(self._remove)

    def install(self, ctx: ssl.SSLContext) -> str:
        """Give ctx this cache and its session id context; "" or why not."""
        ptr, why = tls_libssl.ctx_pointer_why(ctx)
        if not ptr:
            return why
        lib = tls_libssl.libssl()
        sid_ctx = session_id_context(ctx)
        if lib.SSL_CTX_set_session_id_context(ptr, sid_ctx, len(sid_ctx)) != 1:
            return "SSL_CTX_set_session_id_context failed"
        ctx._mta_scache = self  # type: ignore[attr-defined]  # callbacks live with the context
        lib.SSL_CTX_sess_set_new_cb(ptr, ctypes.cast(self.new_cb, ctypes.c_void_p))
        lib.SSL_CTX_sess_set_get_cb(ptr, ctypes.cast(self.get_cb, ctypes.c_void_p))
        lib.SSL_CTX_sess_set_remove_cb(ptr, ctypes.cast(self.remove_cb, ctypes.c_void_p))
        lib.SSL_CTX_ctrl(ptr, SSL_CTRL_SET_SESS_CACHE_MODE, SCACHE_MODE, None)
        if lib.SSL_CTX_ctrl(ptr, SSL_CTRL_GET_SESS_CACHE_MODE, 0, None) != SCACHE_MODE:
            return "SSL_CTX_set_session_cache_mode did not take"
        return ""

    def _failed(self) -> None:
        if self.client.error and not self.warned:
            log.warning(
                "TLS session cache: tlsmgr service: %s;"
                " clients resuming by session id get a full handshake",
                self.client.error,
            )
            self.warned = True
        elif not self.client.error:
            self.warned = False

    def _new(self, ssl_ptr: int, sess: int) -> int:
        try:
            lib = tls_libssl.libssl()
            tickets = not lib.SSL_get_options(ssl_ptr) & ssl.OP_NO_TICKET
            if lib.SSL_version(ssl_ptr) == TLS1_3_VERSION and tickets:
                return 0  # a stateless ticket carries the session
            sid, der = _session_id(sess), pointer_der(sess)
            if sid and der:
                if self.client.update_session(SCACHE_TYPE, sid.hex(), der):
                    self.stored += 1
                self._failed()
        except Exception as exc:  # noqa: BLE001 - never raise into OpenSSL
            log.warning("TLS session cache: cannot store a session: %s", exc)
        return 0  # OpenSSL drops the reference it took for this call

    def _get(self, ssl_ptr: int, data: int, length: int, copy) -> int | None:
        try:
            copy[0] = 0  # the reference d2i_SSL_SESSION made goes to OpenSSL
            if not data or not 0 < length <= SSL_MAX_SSL_SESSION_ID_LENGTH:
                return None
            sid = ctypes.string_at(data, length)
            der = self.client.lookup_session(SCACHE_TYPE, sid.hex())
            self._failed()
            sess = self._parse(der, sid) if der else None
            if sess:
                self.found += 1
                return sess
        except Exception as exc:  # noqa: BLE001 - never raise into OpenSSL: a miss
            log.warning("TLS session cache: cannot look up a session: %s", exc)
        self.missed += 1
        return None

    @staticmethod
    def _parse(der: bytes, sid: bytes) -> int | None:
        """The SSL_SESSION* of der when it parses and has the id sid; None otherwise."""
        if len(der) > SESSION_DER_MAX:
            return None
        lib = tls_libssl.libssl()
        buf = ctypes.create_string_buffer(der, len(der))
        inp = ctypes.c_void_p(ctypes.addressof(buf))
        sess = lib.d2i_SSL_SESSION(None, ctypes.byref(inp), len(der))
        if not sess:
            return None
        if _session_id(sess) != sid:
            lib.SSL_SESSION_free(sess)
            return None
        return sess

    def _remove(self, ctx_ptr: int, sess: int) -> None:
        try:
            sid = _session_id(sess)
            if sid:
                self.client.delete_session(SCACHE_TYPE, sid.hex())
        except Exception as exc:  # noqa: BLE001 - never raise into OpenSSL
            log.warning("TLS session cache: cannot remove a session: %s", exc)

    def close(self) -> None:
        self.client.close()


def setup_server_cache(
    cfg, ctx: ssl.SSLContext | None, client: TlsmgrBlockingClient | None = None
) -> ServerSessionCache | None:
    """The cache of ctx when smtpd_tls_session_cache_database asks for one; None otherwise."""
    if not isinstance(ctx, ssl.SSLContext):
        return None
    if not cfg.get("smtpd_tls_session_cache_database").strip():
        return None
    if cache_timeout(cfg) <= 0:
        return None  # no session cache at all (smtpd/tls_tickets.py)
    cache = ServerSessionCache(client or TlsmgrBlockingClient(cfg))
    try:
        why = cache.install(ctx)
    except Exception as exc:  # noqa: BLE001 - resumption is no reason to stop serving
        why = str(exc)
    if why:
        log.warning(
            "smtpd_tls_session_cache_database: %s; sessions resume only with the smtpd"
            " process that made them",
            why,
        )
        cache.close()
        return None
    return cache
