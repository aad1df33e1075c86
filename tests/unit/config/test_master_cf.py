"""master.cf parsing."""

import pytest

from mta.config.errors import ConfigError
from mta.config.master_cf import parse_master_cf, split_inet_name

HEADER = "# service type  private unpriv  chroot  wakeup  maxproc command + args\n"


def test_fields_and_defaults():
    (svc,) = parse_master_cf(HEADER + "smtp inet n - n - - smtpd\n", default_maxproc=77)
    assert (svc.name, svc.type, svc.private, svc.unpriv, svc.chroot) == (
        "smtp",
        "inet",
        False,
        True,
        False,
    )
    assert (svc.wakeup, svc.maxproc, svc.maxproc_default, svc.command) == (0, 77, True, "smtpd")
    assert svc.line == 2


def test_wakeup_with_question_mark_and_explicit_maxproc():
    (svc,) = parse_master_cf("pickup unix n - n 60? 1 pickup\n")
    assert (svc.wakeup, svc.wakeup_used_only, svc.maxproc) == (60, True, 1)


def test_overrides_and_arguments_and_continuation():
    text = (
        "submission inet n - n - - smtpd\n"
        "  -o syslog_name=mta/submission\n"
        "  -o { smtpd_client_restrictions = permit_mynetworks, reject }\n"
        "  -v\n"
    )
    (svc,) = parse_master_cf(text)
    assert svc.overrides == {
        "syslog_name": "mta/submission",
        "smtpd_client_restrictions": "permit_mynetworks, reject",
    }
    assert svc.args == ["-v"]


def test_inet_names_with_host_and_port():
    assert split_inet_name("127.0.0.1:2525") == ("127.0.0.1", "2525")
    assert split_inet_name("[::1]:2525") == ("::1", "2525")
    assert split_inet_name("smtp") == ("", "smtp")


@pytest.mark.parametrize(
    "line,message",
    [
        ("smtp inet n - n - - \n", "expected 8 or more fields"),
        ("smtp tcp n - n - - smtpd\n", 'bad service type "tcp"'),
        ("smtp inet x - n - - smtpd\n", 'field "private"'),
        ("smtp inet n - n soon - smtpd\n", 'field "wakeup"'),
        ("smtp inet n - n - many smtpd\n", 'field "maxproc"'),
        ("smtp inet n - n - - smtpd -o nonsense\n", 'bad "-o" setting'),
        ("smtp inet n - n - - smtpd -o { a = b\n", 'missing "}"'),
    ],
)
def test_errors_name_file_and_line(line, message):
    with pytest.raises(ConfigError) as info:
        parse_master_cf("# comment\n" + line, "/etc/mta/master.cf")
    assert str(info.value).startswith("/etc/mta/master.cf, line 2: ")
    assert message in str(info.value)


def test_duplicate_service_is_an_error():
    text = "a unix - - n - - x\na unix - - n - - y\n"
    with pytest.raises(ConfigError, match='duplicate service "a/unix" .first at line 1.'):
        parse_master_cf(text)


def test_same_name_different_type_is_allowed():
    text = "smtp inet n - n - - smtpd\nsmtp unix - - n - - smtp\n"
    assert [s.key for s in parse_master_cf(text)] == ["smtp/inet", "smtp/unix"]
