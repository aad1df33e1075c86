"""Fixtures the interop tests share."""

import pytest

from tests.support.instance import SmtpdThread, make_instance


@pytest.fixture
def smtpd(tmp_path, request):
    """An in-process smtpd on 127.0.0.1 for an instance under tmp_path, whose main.cf gets the
    lines of the test's main_cf marker; .cdir is its config directory, .maillog its log file."""
    marker = request.node.get_closest_marker("main_cf")
    cdir = make_instance(tmp_path, marker.args[0] if marker else "")
    server = SmtpdThread(cdir)
    server.cdir = cdir
    server.maillog = tmp_path / "maillog"
    yield server
    server.close()


@pytest.fixture
def cdir(tmp_path):
    """The config directory of a fresh instance under tmp_path."""
    return make_instance(tmp_path)
