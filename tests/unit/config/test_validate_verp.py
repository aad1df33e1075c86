"""default_verp_delimiters and verp_delimiter_filter: checked together, one line each."""

import pytest

from mta.config import Config
from mta.config.validate import config_problems

MASTER_CF = "smtp inet n - n - - smtpd\n"


@pytest.fixture
def make(tmp_path):
    def make(main: str) -> Config:
        (tmp_path / "main.cf").write_text(main)
        (tmp_path / "master.cf").write_text(MASTER_CF)
        return Config(str(tmp_path))

    return make


def fatal_lines(cfg) -> list[str]:
    return [str(p) for p in config_problems(cfg) if p.fatal]


@pytest.mark.parametrize("value", ["+=", "-=", "=+", "--"])
def test_good_delimiters_pass(make, value):
    assert fatal_lines(make(f"default_verp_delimiters = {value}\n")) == []


@pytest.mark.parametrize(
    "value, why",
    [
        ("+", "bad VERP delimiter character count"),
        ("+=-", "bad VERP delimiter character count"),
        ("x=", "bad first VERP delimiter character"),
        ("+@", "bad second VERP delimiter character"),
    ],
)
def test_bad_delimiters_are_fatal_and_named(make, tmp_path, value, why):
    assert fatal_lines(make(f"default_verp_delimiters = {value}\n")) == [
        f"{tmp_path / 'main.cf'}, line 1: parameter default_verp_delimiters: "
        f'{why} in "{value}" (expected two characters from "-=+")'
    ]


def test_a_filter_that_refuses_the_default_delimiters_is_fatal(make, tmp_path):
    assert fatal_lines(make("verp_delimiter_filter = -=\n")) == [
        f"{tmp_path / 'main.cf'}, line 1: parameter verp_delimiter_filter: "
        'default_verp_delimiters "+=" do not pass it: bad first VERP delimiter character'
    ]


def test_a_bad_verp_client_network_is_fatal(make, tmp_path):
    got = fatal_lines(make("smtpd_authorized_verp_clients = 127.0.0.1/33\n"))
    assert got == [
        f"{tmp_path / 'main.cf'}, line 1: parameter smtpd_authorized_verp_clients: "
        'bad network pattern "127.0.0.1/33": need network/prefix without host bits'
    ]
