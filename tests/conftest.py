"""Fixtures every test shares."""

import pytest

from mta.maps import clear_cache


@pytest.fixture(autouse=True)
def fresh_tables():
    """Each test opens its own tables: the per-process table cache starts and ends empty."""
    clear_cache()
    yield
    clear_cache()
