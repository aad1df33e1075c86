"""receive_override_options in smtpd: no_unknown_recipient_checks (after a content
filter) switches off the unlisted-recipient check, and only that; the no_milters flag
other parts read (mta/common/receive_override.py)."""

import asyncio

from mta.common.receive_override import milters_disabled, receive_overrides
from mta.config import load_config
from mta.maps import clear_cache
from mta.smtpd.checks import SmtpdChecks
from tests.unit.smtpd.conftest import session_state

BASE = (
    "myhostname = mx.test.example\n"
    "mydomain = test.example\n"
    "mydestination = mx.test.example\n"
    "mynetworks = 127.0.0.1/32\n"
    "local_recipient_maps = inline:{ user=1, postmaster=1 }\n"
)


def config(tmp_path, text: str = ""):
    conf = tmp_path / "conf"
    conf.mkdir(exist_ok=True)
    (conf / "main.cf").write_text(f"queue_directory = {tmp_path}/queue\n" + BASE + text)
    clear_cache()
    return load_config(str(conf))


def rcpt(tmp_path, text: str, **kw):
    checks = SmtpdChecks(config(tmp_path, text))
    return asyncio.run(checks.recipient(session_state({"client_addr": "127.0.0.1"}, **kw)))


def test_unknown_local_user_is_rejected_without_the_option(tmp_path):
    verdict = rcpt(tmp_path, "", recipient="nobody@mx.test.example")
    assert verdict is not None and verdict.reply.startswith("550 5.1.1 <nobody@mx.test.example>")


def test_no_unknown_recipient_checks_accepts_an_unknown_local_user(tmp_path):
    text = "receive_override_options = no_unknown_recipient_checks\n"
    assert rcpt(tmp_path, text, recipient="nobody@mx.test.example") is None


def test_no_unknown_recipient_checks_covers_the_explicit_restriction(tmp_path):
    text = (
        "receive_override_options = no_unknown_recipient_checks\n"
        "smtpd_recipient_restrictions = reject_unlisted_recipient, permit\n"
    )
    assert rcpt(tmp_path, text, recipient="nobody@mx.test.example") is None


def test_no_unknown_recipient_checks_leaves_relay_control(tmp_path):
    text = "receive_override_options = no_unknown_recipient_checks\n"
    verdict = rcpt(tmp_path, text, client_addr="192.0.2.9", recipient="v@elsewhere.example")
    assert verdict is not None and "Relay access denied" in verdict.reply


def test_no_unknown_recipient_checks_leaves_unlisted_senders(tmp_path):
    text = (
        "receive_override_options = no_unknown_recipient_checks\n"
        "smtpd_reject_unlisted_sender = yes\n"
    )
    checks = SmtpdChecks(config(tmp_path, text))
    verdict = asyncio.run(checks.sender(session_state(sender="nobody@mx.test.example")))
    assert verdict is not None and "Sender address rejected" in verdict.reply


def test_options_are_read_in_any_case_and_separator(tmp_path):
    cfg = config(tmp_path, "receive_override_options = NO_MILTERS,no_header_body_checks\n")
    assert receive_overrides(cfg) == {"no_milters", "no_header_body_checks"}
    assert milters_disabled(cfg)
    assert not milters_disabled(config(tmp_path, ""))
