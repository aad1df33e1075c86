"""milter.settings: milter lists, the per-milter "{ ... }" form, milter_* defaults, and
"mta check" refusing a milter that does not parse."""

from __future__ import annotations

import os
import pwd

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mta.cli import postfix
from mta.config import Config
from mta.milter.settings import MilterSettings, parse_milters


@pytest.fixture
def conf(tmp_path):
    def make(main: str = ""):
        cdir = tmp_path / "etc"
        cdir.mkdir(exist_ok=True)
        user = pwd.getpwuid(os.getuid()).pw_name
        (cdir / "main.cf").write_text(
            f"queue_directory = {tmp_path}/spool\ndata_directory = {tmp_path}/data\n"
            f"mail_owner = {user}\n" + main
        )
        (cdir / "master.cf").write_text("127.0.0.1:2525 inet n - n - - smtpd\n")
        return cdir

    return make


def test_defaults_are_postfix_defaults(conf):
    s = MilterSettings.from_config(Config(str(conf())))
    d = s.defaults
    assert (d.connect_timeout, d.command_timeout, d.content_timeout) == (30, 30, 300)
    assert (d.default_action, d.protocol) == ("tempfail", 6)
    assert s.macros["connect"] == ["j", "{daemon_name}", "{daemon_addr}", "v", "_"]
    assert s.macros["rcpt"] == ["i", "{rcpt_addr}", "{rcpt_host}", "{rcpt_mailer}"]
    assert s.macros["unknown"] == []
    assert s.version.startswith("mta ")


def test_endpoints_and_overrides(conf):
    cfg = Config(str(conf("milter_default_action = accept\n")))
    settings = MilterSettings.from_config(cfg)
    specs = parse_milters(
        "inet:127.0.0.1:8891, unix:/run/rspamd.sock local:clamav "
        "{ inet:[::1]:11332, command_timeout=5s, default_action=quarantine, protocol=4 }",
        settings,
    )
    assert [(s.name, s.transport) for s in specs] == [
        ("inet:127.0.0.1:8891", "inet"),
        ("unix:/run/rspamd.sock", "unix"),
        ("local:clamav", "unix"),
        ("inet:[::1]:11332", "inet"),
    ]
    assert specs[0].address == ("127.0.0.1", "8891")
    assert specs[2].address == os.path.join(cfg.get("queue_directory"), "clamav")
    assert specs[3].address == ("::1", "11332")
    assert (specs[0].default_action, specs[3].default_action) == ("accept", "quarantine")
    assert (specs[3].command_timeout, specs[3].protocol) == (5, 4)


@pytest.mark.parametrize(
    "text",
    [
        "inet:127.0.0.1",
        "inet:host:99999",
        "tcp:host:25",
        "unix:",
        "{ inet:h:1, bogus=1 }",
        "{ inet:h:1, default_action=bounce }",
        "{ inet:h:1, protocol=5 }",
        "{ inet:h:1, command_timeout=soon }",
        "{ inet:h:1",
    ],
)
def test_bad_specs_are_value_errors(conf, text):
    settings = MilterSettings.from_config(Config(str(conf())))
    with pytest.raises(ValueError):
        parse_milters(text, settings)


@given(st.text(max_size=60))
def test_any_text_parses_or_is_a_value_error(text):
    from mta.milter.settings import MilterSpec

    settings = MilterSettings(defaults=MilterSpec("", "", None))
    try:
        for spec in parse_milters(text, settings):
            assert spec.transport in ("inet", "unix")
    except ValueError:
        pass


def test_mta_check_names_the_parameter(conf, capsys):
    cdir = conf("smtpd_milters = inet:127.0.0.1:8891 inet:localhost\n")
    assert postfix.main(["-c", str(cdir)], "check") == 1
    err = capsys.readouterr().err
    assert (
        f"mta check: fatal: {cdir}/main.cf, line 4: parameter smtpd_milters: "
        'malformed milter "inet:localhost": need inet:host:port'
    ) in err


def test_mta_check_refuses_a_bad_default_action(conf, capsys):
    cdir = conf("non_smtpd_milters = inet:127.0.0.1:8891\nmilter_default_action = bounce\n")
    assert postfix.main(["-c", str(cdir)], "check") == 1
    assert "parameter milter_default_action: bad milter default action" in capsys.readouterr().err


def test_mta_check_accepts_good_milters(conf, capsys):
    cdir = conf(
        "smtpd_milters = { inet:127.0.0.1:8891, default_action=accept }\n"
        "non_smtpd_milters = $smtpd_milters\n"
    )
    assert postfix.main(["-c", str(cdir)], "check") == 0, capsys.readouterr().err


def test_mta_check_looks_at_master_cf_overrides(conf, capsys):
    cdir = conf()
    (cdir / "master.cf").write_text(
        "127.0.0.1:2525 inet n - n - - smtpd\n"
        "submission inet n - n - - smtpd\n  -o smtpd_milters=unix:\n"
    )
    assert postfix.main(["-c", str(cdir)], "check") == 1
    err = capsys.readouterr().err
    assert "master.cf, line 2: parameter smtpd_milters: malformed milter" in err
