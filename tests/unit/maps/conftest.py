"""Shared fixtures for the lookup table tests: a configuration and the default warning handler."""

import pytest

from mta.config import load_config
from mta.maps import set_warning_handler


@pytest.fixture(autouse=True)
def default_warning_handler():
    yield
    set_warning_handler(None)


@pytest.fixture
def cfg(tmp_path):
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "main.cf").write_text(f"queue_directory = {tmp_path}/queue\n")
    return load_config(str(conf))


@pytest.fixture
def warnings():
    seen: list[str] = []
    set_warning_handler(seen.append)
    return seen
