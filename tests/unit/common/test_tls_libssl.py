"""The one ctypes loader of libssl and libcrypto (mta/common/tls_libssl.py): the copy
Python's _ssl uses, checked pointers, groups and the verification depth."""

from __future__ import annotations

import ssl

from mta.common import tls_libssl


def mapped(name: bytes) -> set[bytes]:
    with open("/proc/self/maps", "rb") as f:
        return {line.split()[5] for line in f if len(line.split()) >= 6 and name in line.split()[5]}


def test_bind_uses_the_libraries_python_loaded_and_no_second_copy():
    before = mapped(b"/libssl.so"), mapped(b"/libcrypto.so")
    assert tls_libssl.bind() == "" and tls_libssl.why_not() == ""
    assert tls_libssl.unavailable() == ""
    assert (mapped(b"/libssl.so"), mapped(b"/libcrypto.so")) == before
    assert len(before[0]) == 1 and len(before[1]) == 1
    assert tls_libssl.libssl() is not None and tls_libssl.libcrypto() is not None


def test_ctx_pointer_checks_out_only_for_a_context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    assert tls_libssl.ctx_pointer(ctx) != 0
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_OPTIONAL
    assert tls_libssl.ctx_pointer(ctx) != 0
    ctx.verify_mode = ssl.CERT_NONE
    assert tls_libssl.ctx_pointer(ctx) != 0  # the verify mode is read as Python maps it
    assert tls_libssl.ctx_pointer(object()) == 0  # type: ignore[arg-type]
    assert tls_libssl.ctx_pointer_why(object())[1]  # type: ignore[arg-type]


def test_ssl_pointer_belongs_to_the_context_of_its_connection():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    sslobj = ctx.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_hostname="x.example")
    ptr = tls_libssl.ssl_pointer(sslobj)
    assert ptr != 0
    assert tls_libssl.libssl().SSL_get_SSL_CTX(ptr) == tls_libssl.ctx_pointer(ctx)
    assert tls_libssl.ssl_pointer(object()) == 0  # type: ignore[arg-type]


def test_set_groups_skips_names_openssl_does_not_know():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    assert tls_libssl.set_groups(ctx, ["nosuchcurve", "secp384r1", "X25519"]) == [
        "secp384r1",
        "X25519",
    ]
    assert tls_libssl.set_groups(ctx, ["nosuchcurve", "bad name!"]) == []
    assert tls_libssl.set_groups(object(), ["X25519"]) is None  # type: ignore[arg-type]


def test_set_verify_depth_takes_postfixs_count():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    assert tls_libssl.set_verify_depth(ctx, 3) == ""
    assert tls_libssl.verify_depth(ctx) == 2  # OpenSSL does not count the trust anchor
    assert tls_libssl.set_verify_depth(object(), 3) != ""  # type: ignore[arg-type]
