"""A client TLS session written out in one client context and read back into
another (mta/common/tls_serial.py), as two smtp processes do through tlsmgr."""

import ssl

import pytest

from mta.common.tls_serial import offer_der, session_der
from tests.unit.common.test_tls_ticket import KEY_A, cert, client, handshake, server  # noqa: F401


def handshake_offering(cctx, sctx, der: bytes):
    """A handshake of a fresh connection of cctx that was offered der; (why, client, server)."""
    bufs = [ssl.MemoryBIO() for _ in range(4)]
    c = cctx.wrap_bio(bufs[0], bufs[1], server_hostname="mx")
    why = offer_der(c, der)
    s = sctx.wrap_bio(bufs[2], bufs[3], server_side=True)
    for _ in range(10):
        for obj in (c, s):
            try:
                obj.do_handshake()
            except ssl.SSLWantReadError:
                pass
        bufs[2].write(bufs[1].read())
        bufs[0].write(bufs[3].read())
    return why, c, s


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2])
def test_a_session_written_in_one_context_resumes_in_another(cert, version):  # noqa: F811
    sctx = server(cert, KEY_A)
    first, _ = handshake(client(version), sctx)
    der = session_der(first)
    assert der[:1] == b"\x30"  # DER: a SEQUENCE
    why, c, s = handshake_offering(client(version), sctx, der)  # another "process"
    assert why == ""
    assert c.session_reused and s.session_reused


def test_damaged_sessions_are_refused_and_cost_a_full_handshake(cert):  # noqa: F811
    sctx = server(cert, KEY_A)
    der = session_der(handshake(client(ssl.TLSVersion.TLSv1_3), sctx)[0])
    for bad in (b"garbage", der[:40], b""):
        why, c, s = handshake_offering(client(ssl.TLSVersion.TLSv1_3), sctx, bad)
        assert why and not c.session_reused
        assert c.version() == "TLSv1.3"  # the connection still works


def test_no_session_before_the_handshake(cert):  # noqa: F811
    bufs = [ssl.MemoryBIO() for _ in range(2)]
    c = client(ssl.TLSVersion.TLSv1_3).wrap_bio(bufs[0], bufs[1], server_hostname="mx")
    assert session_der(c) == b""
