"""The effective configuration: defaults, main.cf, overrides, typed values."""

import os

import pytest

from mta.config import Config, load_config
from mta.config.config import resolve_config_dir
from mta.config.errors import ConfigError
from mta.config.params import PARAMS


@pytest.fixture
def confdir(tmp_path):
    def make(text=""):
        (tmp_path / "main.cf").write_text(text)
        return Config(str(tmp_path))

    return make


def test_every_default_converts_to_its_kind(confdir):
    cfg = confdir()
    for name in PARAMS:
        cfg.get_typed(name)  # raises on a table typo


def test_main_cf_overrides_default_and_master_override_wins(confdir):
    cfg = confdir("smtpd_timeout = 60s\n")
    assert cfg.get_time("smtpd_timeout") == 60
    assert cfg.with_overrides({"smtpd_timeout": "10"}).get_time("smtpd_timeout") == 10


def test_stress_conditional_default(confdir):
    cfg = confdir()
    assert cfg.get_time("smtpd_timeout") == 300
    assert cfg.with_overrides({"stress": "yes"}).get_time("smtpd_timeout") == 10


def test_derived_defaults_follow_myhostname(confdir):
    cfg = confdir("myhostname = mx1.mail.example\n")
    assert cfg.get("mydomain") == "mail.example"
    assert cfg.get("myorigin") == "mx1.mail.example"
    assert cfg.get_list("mydestination") == [
        "mx1.mail.example",
        "localhost.mail.example",
        "localhost",
    ]


def test_mynetworks_host_style_lists_only_host_addresses(confdir):
    nets = confdir("mynetworks_style = host\n").get_list("mynetworks")
    assert "127.0.0.0/8" in nets
    assert all(n.endswith(("/32", "/128")) for n in nets if n != "127.0.0.0/8")


def test_bad_value_names_file_line_and_parameter(confdir, tmp_path):
    cfg = confdir("# x\nsmtpd_timeout = soon\n")
    with pytest.raises(ConfigError) as info:
        cfg.get_time("smtpd_timeout")
    assert str(info.value) == (
        f'{tmp_path}/main.cf, line 2: parameter smtpd_timeout: bad time value "soon" '
        "(expected a number with unit s, m, h, d or w)"
    )


def test_validate_finds_a_bad_boolean(confdir):
    with pytest.raises(ConfigError, match="line 1: parameter biff: bad boolean"):
        confdir("biff = sometimes\n").validate()


def test_validate_finds_an_expansion_loop(confdir):
    with pytest.raises(ConfigError, match="expansion loop"):
        confdir("myhostname = $myorigin\nmyorigin = $myhostname\n").validate()


def test_unknown_settings_are_listed(confdir):
    cfg = confdir("myhostname = a\nnosuch_thing = 1\nsmtp_destination_concurrency_limit = 3\n")
    assert [e.name for e in cfg.unknown_settings({"smtp"})] == ["nosuch_thing"]


def test_per_transport_parameters_default_to_their_general_form(confdir):
    cfg = confdir("default_destination_concurrency_limit = 7\n")
    assert cfg.get_int("smtp_destination_concurrency_limit") == 7
    assert cfg.raw("relay_extra_recipient_limit") == "$default_extra_recipient_limit"


def test_config_dir_order(tmp_path, monkeypatch):
    monkeypatch.setenv("MTA_CONFIG_DIR", str(tmp_path / "env"))
    assert resolve_config_dir(str(tmp_path / "cli")) == str(tmp_path / "cli")
    assert resolve_config_dir(None) == str(tmp_path / "env")


def test_embedded_instance_is_created_when_nothing_is_given(tmp_path, monkeypatch):
    monkeypatch.delenv("MTA_CONFIG_DIR", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    cfg = load_config(None)
    assert cfg.config_dir == str(tmp_path / "mta")
    assert cfg.get("queue_directory") == str(tmp_path / "mta" / "spool")
    assert cfg.get("inet_interfaces") == "loopback-only"
    assert os.path.exists(os.path.join(cfg.config_dir, "master.cf"))


def test_missing_config_dir_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="no such configuration directory"):
        load_config(str(tmp_path / "nope"))
