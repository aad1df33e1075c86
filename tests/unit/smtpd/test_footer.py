"""smtpd_reject_footer templates: line breaks, \\c, attributes, the expansion filter."""

import pytest

from mta.config import load_config
from mta.smtpd.footer import FooterError, ReplyFooter, expand_macros, unescape

ATTRS = {"client_address": "192.0.2.7", "client_port": "4711", "helo_name": "h.example"}
ALLOWED = frozenset(
    unescape(
        "\\t\\40!\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ"
        "[\\\\]^_`abcdefghijklmnopqrstuvwxyz{|}~"
    )
)


def footer(tmp_path, template: str) -> ReplyFooter:
    (tmp_path / "main.cf").write_text(
        f"myhostname = mx.test.example\nsmtpd_reject_footer = {template}\n"
    )
    return ReplyFooter(load_config(str(tmp_path)))


def test_unescape_reads_octal_and_letters():
    assert unescape("\\t\\40a\\\\b") == "\t a\\b"


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("$client_address", "192.0.2.7"),
        ("${client_port}/$(helo_name)", "4711/h.example"),
        ("${helo_name?helo $helo_name}", "helo h.example"),
        ("${sender?yes}${sender:none}", "none"),
        ("$$5 $unknown.", "$5 ."),
        ("${helo_name?from ${helo_name} (${client_address})}", "from h.example (192.0.2.7)"),
    ],
)
def test_expand_macros(template, expected):
    assert expand_macros(template, ATTRS, ALLOWED) == expected


def test_values_outside_the_filter_are_censored():
    assert expand_macros("$helo_name", {"helo_name": "a\rb\x00c"}, ALLOWED) == "a_b_c"


@pytest.mark.parametrize("template", ["${client_address", "$(x", "${a b}", "cost $"])
def test_malformed_templates_are_refused(template):
    with pytest.raises(FooterError):
        expand_macros(template, ATTRS, ALLOWED)


def test_footer_lines_repeat_code_and_status(tmp_path):
    f = footer(tmp_path, "first\\nsecond $server_name")
    assert f.apply("550 5.7.1 Access denied", ATTRS) == (
        "550-5.7.1 Access denied\r\n550-5.7.1 first\r\n550 5.7.1 second mx.test.example"
    )


def test_backslash_c_continues_the_last_line(tmp_path):
    f = footer(tmp_path, "\\c (from $client_address)")
    assert f.apply("421 mx Error: timeout", ATTRS) == "421 mx Error: timeout (from 192.0.2.7)"


def test_success_replies_and_bad_templates_get_no_footer(tmp_path):
    f = footer(tmp_path, "text")
    assert f.apply("250 2.0.0 Ok", ATTRS) == "250 2.0.0 Ok"
    bad = footer(tmp_path, "broken ${client_address")
    assert bad.apply("550 5.7.1 No", ATTRS) == "550 5.7.1 No"


def test_no_footer_configured_is_false(tmp_path):
    assert not footer(tmp_path, "")
