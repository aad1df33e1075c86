"""Bounce classes: real replies of the large providers and of common servers, the
administrator's table first, and any text at all classified without a crash."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mta.common.bounce_class import CLASSES, KEY_LIMIT, Classifier, class_key
from mta.common.dsn import ACTION_DELAYED, ACTION_DELIVERED, ACTION_FAILED, RecipientStatus
from mta.maps import Maps

# (dsn, reply as the server gave it, the class a bulk sender would file it under)
REPLIES = [
    (
        "5.1.1",
        "550-5.1.1 The email account that you tried to reach does not exist. Please try",
        "invalid_mailbox",
    ),
    (
        "5.1.1",
        "550 5.1.1 <u@example.com>: Recipient address rejected: User unknown in virtual mailbox table",
        "invalid_mailbox",
    ),
    ("5.0.0", "550 Requested action not taken: mailbox unavailable", "invalid_mailbox"),
    (
        "5.1.10",
        "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup",
        "invalid_mailbox",
    ),
    (
        "5.4.1",
        "550 5.4.1 Recipient address rejected: Access denied. AS(201806281)",
        "invalid_mailbox",
    ),
    (
        "5.2.1",
        "550 5.2.1 The email account that you tried to reach is disabled.",
        "inactive_mailbox",
    ),
    (
        "5.0.0",
        "554 delivery error: dd This user doesn't have a yahoo.com account (u@yahoo.com) [0]",
        "invalid_mailbox",
    ),
    (
        "5.0.0",
        "554 30 Sorry, your message to u@aol.com cannot be delivered. This mailbox is disabled (554.30).",
        "inactive_mailbox",
    ),
    ("4.2.2", "452-4.2.2 The email account that you tried to reach is over quota.", "mailbox_full"),
    ("5.2.2", "552 5.2.2 Mailbox full", "mailbox_full"),
    (
        "4.7.28",
        "421-4.7.28 [192.0.2.1] Our system has detected an unusual rate of unsolicited mail",
        "rate_limited",
    ),
    (
        "5.7.28",
        "550-5.7.28 [192.0.2.1] Our system has detected an unusual rate of unsolicited mail",
        "spam_block",
    ),
    (
        "4.7.0",
        "421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume",
        "rate_limited",
    ),
    (
        "5.7.9",
        "554 5.7.9 Message not accepted for policy reasons. See https://postmaster.yahooinc.com/error-codes TS03",
        "spam_block",
    ),
    (
        "5.7.0",
        "550 5.7.0 (BAY004-MC1F15) Unfortunately, messages from 192.0.2.1 weren't sent. [S3150]",
        "spam_block",
    ),
    (
        "4.7.650",
        "451 4.7.650 The mail server [192.0.2.1] has been temporarily rate limited due to IP reputation",
        "rate_limited",
    ),
    (
        "5.7.26",
        "550-5.7.26 This mail has been blocked because the sender is unauthenticated. DMARC",
        "policy",
    ),
    ("5.7.1", "550 5.7.1 SPF check failed", "policy"),
    (
        "5.7.1",
        "554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org",
        "spam_block",
    ),
    ("5.7.1", "550 5.7.1 Message rejected as spam by Content Filtering.", "spam_block"),
    ("5.7.1", "554 5.7.1 <u@example.com>: Relay access denied", "routing"),
    ("5.3.4", "552 5.3.4 Message size exceeds fixed limit", "content"),
    ("5.7.0", "554 5.7.0 Message contains a virus (Eicar-Test-Signature)", "content"),
    (
        "5.1.2",
        "Host or domain name not found. Name service error for name=nx.example type=MX: Host not found",
        "domain_not_found",
    ),
    ("5.1.10", "556 5.1.10 Recipient address has null MX", "domain_not_found"),
    ("4.4.1", "connect to mx.example.com[192.0.2.1]:25: Connection refused", "routing"),
    (
        "4.4.2",
        "lost connection with mx.example.com[192.0.2.1] while receiving the initial server greeting",
        "routing",
    ),
    ("5.5.1", "500 5.5.1 Command unrecognized", "protocol"),
    ("4.0.0", "451 Temporary local problem - please try later", "unclassified"),
]


@pytest.mark.parametrize(("dsn", "reply", "klass"), REPLIES)
def test_real_replies(dsn, reply, klass):
    assert Classifier().classify(dsn, reply) == klass


def test_of_status_uses_the_remote_reply_and_only_for_failures():
    c = Classifier()
    st = RecipientStatus(
        "u@x.example", 1, ACTION_FAILED, "5.1.1", "host mx said: 550 5.1.1 user unknown"
    )
    st.diag_text = "550 5.1.1 user unknown"
    assert c.of_status(st) == "invalid_mailbox"
    st.action = ACTION_DELAYED
    assert c.of_status(st) == "invalid_mailbox"
    st.action = ACTION_DELIVERED
    assert c.of_status(st) == ""


def test_administrators_table_wins(tmp_path):
    table = tmp_path / "classes"
    table.write_text("/quota/ inactive_mailbox\n/spamhaus/ not_a_class\n")
    c = Classifier(Maps([f"regexp:{table}"]))
    assert c.classify("5.2.2", "552 over quota") == "inactive_mailbox"
    # an answer that is no class is ignored: the built-in table answers
    assert c.classify("5.7.1", "554 blocked using zen.spamhaus.org") == "spam_block"
    assert c.classify("5.1.1", "550 user unknown") == "invalid_mailbox"


def test_key_is_one_bounded_line():
    key = class_key("5.1.1", "550-5.1.1 first\r\n550 5.1.1 second" + "x" * 10000)
    assert "\n" not in key and "\r" not in key
    assert key.startswith("5.1.1 550-5.1.1 first 550 5.1.1 second")
    assert len(key) == KEY_LIMIT


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["2.0.0", "4.0.0", "5.0.0", "5.1.1", "4.7.28", "5.7.1", "x.y", ""]),
    st.text(max_size=3000),
)
def test_any_reply_gets_a_class(dsn, text):
    assert Classifier().classify(dsn, text) in CLASSES
