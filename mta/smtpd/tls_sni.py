"""smtpd.tls_sni - tls_server_sni_maps: the certificate a client names with TLS SNI

SYNOPSIS
    from mta.smtpd.tls_sni import setup_sni, sni_problems
    setup_sni(ctx, cfg, build)    # build(load_keys) -> a server context like ctx
    sni_problems(ctx)             # [(param, message)] for mta check

DESCRIPTION
    With tls_server_sni_maps set, the server name a client sends in the
    TLS Server Name Indication extension chooses smtpd's keys and
    certificate chains. The tables are searched for the name as sent
    (in lower case, without a trailing dot), then for each parent
    domain with a leading dot: "mx.example.com", ".example.com",
    ".com". A value holds PEM keys and chains in the syntax of
    smtpd_tls_chain_files: either a list of file names (tables read at
    run time: texthash, inline, regexp ...; or an lmdb table built
    without -F), or their concatenated PEM text in base64 (an lmdb
    table built with "mta map -F", or a table kept outside mta).

    The handshake then continues with a context built exactly as the
    default one (protocols, ciphers, client certificates), holding the
    keys of that value; contexts are kept per value. Session tickets
    stay those of the default context. The entries of tables that can
    be listed (lmdb, texthash, inline) are loaded when smtpd starts,
    before it gives up root, and mta check names the entries whose keys
    do not load; those of other tables at the first lookup.

    No SNI, a name that is not a valid host name, or a name the tables
    do not know: the default certificates. A table that fails, or a
    value whose keys cannot be loaded: the default certificates and a
    warning naming the table and the problem.

SECURITY
    The server name comes from an untrusted client: only a valid
    host name is looked up. Values hold private keys; the files a value
    of a table that cannot be listed names are read when the name is
    first asked for, so they must be readable by the user smtpd runs
    as (a -F table holds the keys themselves). A PEM group goes through a private temporary
    file (mode 0600) removed at once.
"""

from __future__ import annotations

import base64
import binascii
import re
import ssl
from collections.abc import Callable

from mta import log
from mta.common.tls_keys import load_chain_files, load_chain_pem
from mta.maps import MapError, Maps
from mta.smtpd.tls_params import TlsSetupError

PARAM = "tls_server_sni_maps"
SNI_CONTEXT_LIMIT = 256  # contexts kept, one per distinct table value
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)\Z")
_B64 = re.compile(r"[A-Za-z0-9+/=\s]+\Z")


def valid_name(name: str) -> bool:
    """Is name a host name (LDH labels, A-labels for IDN) worth a lookup?"""
    return 0 < len(name) <= 253 and all(_LABEL.match(label) for label in name.split("."))


def lookup_keys(name: str) -> list[str]:
    """The keys tried for an SNI name: itself, then ".parent" for each parent domain."""
    labels = name.split(".")
    return [name] + ["." + ".".join(labels[i:]) for i in range(1, len(labels))]


def _pem_of(value: str) -> bytes | None:
    """The PEM text of a base64 value (mta map -F), or None when value names files."""
    if not _B64.match(value):
        return None
    try:
        data = base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        return None
    return data if b"-----BEGIN " in data else None


class SniChooser:
    """The sni_callback of smtpd's default context."""

    def __init__(self, cfg, build: Callable[[Callable], ssl.SSLContext]) -> None:
        self.maps = Maps.from_param(cfg, PARAM)
        self.build = build
        self.contexts: dict[str, ssl.SSLContext] = {}
        self.failed: dict[str, TlsSetupError] = {}  # value -> why its keys did not load
        self.problems: list[tuple[str, TlsSetupError]] = []  # (key, why) found by preload()
        self.preload()

    def preload(self) -> None:
        """Load the keys of every entry of the tables that can list them, now, while smtpd
        may still read root's files (tables that cannot: at the first lookup)."""
        for table in self.maps:
            try:
                entries = list(table.items())
            except (MapError, OSError):
                continue
            for key, value in entries:
                if len(self.contexts) >= SNI_CONTEXT_LIMIT:
                    return
                try:
                    self._context(key, value)
                except TlsSetupError as exc:
                    self.problems.append((key, exc))

    def _context(self, name: str, value: str) -> ssl.SSLContext:
        ctx = self.contexts.get(value)
        if ctx is not None:
            return ctx
        if value in self.failed:
            raise self.failed[value]
        pem = _pem_of(value)
        where = f"value for {name}"

        def load(new: ssl.SSLContext, _cfg) -> None:
            if pem is not None:
                load_chain_pem(new, PARAM, where, pem)
            else:
                load_chain_files(new, PARAM, value.replace(",", " ").split())

        try:
            ctx = self.build(load)
        except TlsSetupError as exc:
            if len(self.failed) < SNI_CONTEXT_LIMIT:
                self.failed[value] = exc
            raise
        if len(self.contexts) < SNI_CONTEXT_LIMIT:
            self.contexts[value] = ctx
        return ctx

    def choose(self, name: str) -> ssl.SSLContext | None:
        """The context for SNI name, or None for the default certificates."""
        name = name.strip().lower().rstrip(".")
        if not valid_name(name):
            log.info("TLS SNI name %r is not a valid host name: default certificates", name[:80])
            return None
        try:
            for key in lookup_keys(name):
                value = self.maps.lookup(key)
                if value is not None:
                    return self._context(name, value)
        except (MapError, OSError) as exc:
            log.warning("%s: lookup of %s failed: %s: default certificates", PARAM, name, exc)
            return None
        except TlsSetupError as exc:
            log.warning("TLS SNI %s: %s: default certificates", name, exc)
            return None
        log.info("TLS SNI name %s not found in %s: default certificates", name, PARAM)
        return None

    def __call__(self, ssl_object, server_name: str | None, default: ssl.SSLContext) -> None:
        if not server_name:
            return None
        ctx = self.choose(server_name)
        if ctx is not None:
            ssl_object.context = ctx
        return None


def sni_problems(ctx: ssl.SSLContext) -> list[tuple[str, str]]:
    """What mta check says about the entries of tls_server_sni_maps: [(param, message)]."""
    chooser = ctx.sni_callback
    if not isinstance(chooser, SniChooser):
        return []
    return [(PARAM, f"TLS SNI {key}: {exc}: default certificates") for key, exc in chooser.problems]


def setup_sni(ctx: ssl.SSLContext, cfg, build: Callable[[Callable], ssl.SSLContext]) -> None:
    """Give ctx an SNI callback from tls_server_sni_maps (nothing when it is empty)."""
    if not cfg.get_list(PARAM):
        return
    try:
        ctx.sni_callback = SniChooser(cfg, build)
    except MapError as exc:  # the default certificates for every name
        log.warning("%s: %s: SNI names are not looked up", PARAM, exc)
