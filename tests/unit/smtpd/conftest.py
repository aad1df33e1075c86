"""Shared fixtures of the smtpd restriction tests: a maillog, SmtpdChecks built from
main.cf text, and session states with test defaults."""

from __future__ import annotations

import pytest

from mta import log
from mta.config import load_config
from mta.maps import clear_cache
from mta.smtpd.checks import SessionState, SmtpdChecks

STATE_DEFAULTS = dict(
    client_addr="192.0.2.99",
    client_name="client.example",
    client_port=40000,
    reverse_name="client.example",
    helo_name="helo.example",
    protocol="ESMTP",
    esmtp=True,
    sender="a@sender.example",
    recipient="user@mx.test.example",
)


def session_state(defaults: dict | None = None, **kw) -> SessionState:
    """A SessionState with STATE_DEFAULTS, then defaults, then kw."""
    return SessionState(**{**STATE_DEFAULTS, **(defaults or {}), **kw})


def logged_warnings(maillog) -> list[str]:
    log.flush()
    text = maillog.read_text() if maillog.exists() else ""
    return [line for line in text.splitlines() if "warning:" in line]


@pytest.fixture
def maillog(tmp_path):
    path = tmp_path / "maillog"
    yield path
    log.init("smtpd", None, stdout=False)


@pytest.fixture
def checks_from(tmp_path, maillog):
    """checks_from(base, text) -> SmtpdChecks over base plus text, logging to maillog."""

    def build(base: str, text: str = "") -> SmtpdChecks:
        conf = tmp_path / "conf"
        conf.mkdir(exist_ok=True)
        (conf / "main.cf").write_text(
            f"queue_directory = {tmp_path}/queue\nmaillog_file = {maillog}\n" + base + text
        )
        clear_cache()
        cfg = load_config(str(conf))
        log.init("smtpd", cfg)
        return SmtpdChecks(cfg)

    return build
