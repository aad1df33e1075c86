"""The ticket key callback (mta/common/tls_ticket_keys.py): new tickets under the
current key, tickets under the previous key still accepted and renewed, any
other key a full handshake."""

import os
import ssl

import pytest

from mta.common.tls_ticket_keys import install_ticket_keys
from tests.unit.common.test_tls_ticket import cert, client, handshake, server  # noqa: F401

OLD, NEW, OTHER = os.urandom(80), os.urandom(80), os.urandom(80)


def keyed(cert, current, previous=None):  # noqa: F811
    ctx = server(cert)
    assert install_ticket_keys(ctx, current, previous) == ""
    return ctx


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2])
def test_a_ticket_under_the_previous_key_resumes_and_is_renewed(cert, version):  # noqa: F811
    cctx = client(version)
    issued = handshake(cctx, keyed(cert, OLD))[0].session
    rotated = keyed(cert, NEW, OLD)
    again, srv = handshake(cctx, rotated, issued)
    assert again.session_reused and srv.session_reused
    # the ticket it got now is under NEW: a context that knows only NEW takes it
    assert handshake(cctx, keyed(cert, NEW), again.session)[0].session_reused


def test_a_ticket_under_an_unknown_key_gets_a_full_handshake(cert):  # noqa: F811
    cctx = client(ssl.TLSVersion.TLSv1_3)
    issued = handshake(cctx, keyed(cert, OTHER))[0].session
    again, srv = handshake(cctx, keyed(cert, NEW, OLD), issued)
    assert not again.session_reused and not srv.session_reused
    assert again.version() == "TLSv1.3"


def test_keys_of_the_wrong_size_are_refused(cert):  # noqa: F811
    assert install_ticket_keys(server(cert), NEW[:32], None) != ""
