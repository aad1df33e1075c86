"""smtpd.address helpers on their own."""

from mta.smtpd.address import printable_arg


def test_printable_arg_collapses_blanks_and_hides_control_bytes():
    assert printable_arg(b" a\x00b \t c\r\xff \xc3\xa9 ") == "a?b c?? \u00e9"
