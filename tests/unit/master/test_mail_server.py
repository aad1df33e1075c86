"""The child's command line parser."""

import pytest

from mta.master.mail_server import ServiceUsage, parse_service_argv


def test_options_then_arguments():
    a = parse_service_argv(["-n", "x", "-t", "inet", "-o", "a = b c", "-v", "arg", "-v"])
    assert (a.name, a.type, a.overrides, a.verbose, a.args) == (
        "x",
        "inet",
        {"a": "b c"},
        1,
        ["arg", "-v"],
    )


def test_double_dash_ends_options():
    assert parse_service_argv(["--", "-n"]).args == ["-n"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["-n"], "option -n needs a value"),
        (["-o", "novalue"], "bad -o setting"),
        (["-s", "0"], "bad socket count"),
        (["-z"], "unknown option -z"),
    ],
)
def test_bad_command_lines(argv, message):
    with pytest.raises(ServiceUsage, match=message):
        parse_service_argv(argv)
