"""Fixtures for the trivial-rewrite tests: a configuration maker and a clean table cache."""

import pytest

from mta.config import load_config

BASE = "myhostname = mx.example.com\nmydomain = example.com\ninet_interfaces = loopback-only\n"


@pytest.fixture
def make_cfg(tmp_path):
    count = [0]

    def make(extra: str = ""):
        count[0] += 1
        conf = tmp_path / f"conf{count[0]}"
        conf.mkdir()
        (conf / "main.cf").write_text(BASE + f"queue_directory = {tmp_path}/queue\n" + extra)
        return load_config(str(conf))

    return make
