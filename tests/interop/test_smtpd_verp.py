"""smtpd and XVERP over real sockets: offered and accepted only for
smtpd_authorized_verp_clients, with Postfix's replies, and kept in the queue file."""

import smtplib

import pytest

from mta.common.verp import VERP_ATTR
from mta.queue.queue_file import read_queue_file
from tests.support.instance import incoming_files

pytestmark = pytest.mark.interop

AUTHORIZED = pytest.mark.main_cf("smtpd_authorized_verp_clients = 127.0.0.1\n")
MESSAGE = b"Subject: list\r\n\r\nHello, list.\r\n"


def client(smtpd, source: str = "127.0.0.1") -> smtplib.SMTP:
    s = smtplib.SMTP("127.0.0.1", smtpd.port, timeout=10, source_address=(source, 0))
    s.ehlo("client.example")
    return s


def queued_attrs(smtpd) -> dict:
    (path,) = incoming_files(smtpd.cdir)
    return read_queue_file(path).attrs


@AUTHORIZED
def test_ehlo_offers_xverp_to_an_authorized_client(smtpd):
    with client(smtpd) as s:
        assert s.has_extn("xverp")


@AUTHORIZED
def test_ehlo_does_not_offer_xverp_to_other_clients(smtpd):
    with client(smtpd, "127.0.0.2") as s:
        assert s.has_extn("pipelining") and not s.has_extn("xverp")


def test_no_client_is_authorized_by_default(smtpd):
    with client(smtpd) as s:  # in mynetworks, but the list is empty, as postconf -d has it
        assert not s.has_extn("xverp")
        assert s.mail("owner@mx.test.example", ["XVERP"]) == (
            555,
            b"5.5.4 Unsupported option: XVERP",
        )


@AUTHORIZED
def test_xverp_with_the_default_delimiters_is_queued(smtpd):
    with client(smtpd) as s:
        assert s.mail("owner-list@mx.test.example", ["XVERP"])[0] == 250
        assert s.rcpt("u@mx.test.example")[0] == 250
        assert s.data(MESSAGE)[0] == 250
    assert queued_attrs(smtpd)[VERP_ATTR] == "+="


@AUTHORIZED
def test_xverp_with_explicit_delimiters_is_queued(smtpd):
    with client(smtpd) as s:
        assert s.mail("owner-list@mx.test.example", ["XVERP=-="])[0] == 250
        assert s.rcpt("u@mx.test.example")[0] == 250
        assert s.data(MESSAGE)[0] == 250
    assert queued_attrs(smtpd)[VERP_ATTR] == "-="


@AUTHORIZED
def test_mail_without_xverp_has_no_delimiters(smtpd):
    with client(smtpd) as s:
        s.sendmail("owner-list@mx.test.example", ["u@mx.test.example"], MESSAGE)
    assert VERP_ATTR not in queued_attrs(smtpd)


@AUTHORIZED
@pytest.mark.parametrize("option", ["XVERP=+", "XVERP=+=-", "XVERP=x=", "XVERP=+@", "XVERP="])
def test_bad_delimiters_are_refused(smtpd, option):
    with client(smtpd) as s:
        assert s.mail("owner-list@mx.test.example", [option]) == (
            501,
            b"5.5.4 Error: XVERP needs two characters from -=+",
        )


@pytest.mark.main_cf("smtpd_authorized_verp_clients = 127.0.0.1\nverp_delimiter_filter = -=\n")
def test_the_reply_names_the_configured_filter(smtpd):
    with client(smtpd) as s:
        assert s.mail("o@mx.test.example", ["XVERP=+="]) == (
            501,
            b"5.5.4 Error: XVERP needs two characters from -=",
        )


@AUTHORIZED
def test_xverp_from_an_unauthorized_client_is_an_unsupported_option(smtpd):
    with client(smtpd, "127.0.0.2") as s:
        assert s.mail("owner-list@mx.test.example", ["XVERP"]) == (
            555,
            b"5.5.4 Unsupported option: XVERP",
        )


@AUTHORIZED
def test_xverp_needs_a_sender(smtpd):
    with client(smtpd) as s:
        assert s.mail("", ["XVERP"]) == (503, b"5.5.4 Error: XVERP requires non-null sender")
        assert s.mail("owner-list@mx.test.example", ["XVERP"])[0] == 250  # no MAIL was taken


@pytest.mark.main_cf(
    "smtpd_authorized_verp_clients = 127.0.0.1\nsmtpd_discard_ehlo_keywords = xverp\n"
)
def test_discarded_keyword_is_not_offered_but_still_accepted(smtpd):
    with client(smtpd) as s:
        assert not s.has_extn("xverp")
        assert s.mail("owner-list@mx.test.example", ["XVERP"])[0] == 250
