"""Shared fixture of the mta check tests: the problems config_problems() finds."""

import pytest

from mta.config import Config
from mta.config.validate import config_problems


@pytest.fixture
def check(tmp_path):
    """check(main_cf_text) -> [(problem text, fatal)] for an instance with an smtpd and an
    smtp client service."""

    def check(main: str) -> list[tuple[str, bool]]:
        (tmp_path / "main.cf").write_text(main)
        (tmp_path / "master.cf").write_text(
            "smtp inet n - n - - smtpd\nrelay unix - - n - - smtp\n"
        )
        return [(str(p), p.fatal) for p in config_problems(Config(str(tmp_path)))]

    return check
