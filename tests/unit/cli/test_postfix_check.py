"""mta check: every problem smtpd and the other services would meet, before anything runs."""

import os
import pwd
import re
import subprocess

import pytest

from mta.cli import postfix

MASTER_CF = (
    "127.0.0.1:2525 inet n - n - - smtpd\nqmgr fifo n - n 300 1 qmgr\nsmtp unix - - n - - smtp\n"
)


@pytest.fixture
def make(tmp_path):
    def make(main: str = "", master: str = MASTER_CF):
        conf = tmp_path / "etc"
        conf.mkdir(exist_ok=True)
        user = pwd.getpwuid(os.getuid()).pw_name
        (conf / "main.cf").write_text(
            f"queue_directory = {tmp_path}/spool\ndata_directory = {tmp_path}/data\n"
            f"mail_owner = {user}\n" + main
        )
        (conf / "master.cf").write_text(master)
        return conf

    return make


def run_mta(capsys, conf, command: str = "check"):
    """mta -c conf command (check unless told): its exit code and stderr."""
    rc = postfix.main(["-c", str(conf)], command)
    _, err = capsys.readouterr()
    return rc, err


def fatal_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("mta check: fatal: ")]


def failed_check(capsys, conf) -> list[str]:
    """mta check on conf must exit 1; returns its fatal lines."""
    rc, err = run_mta(capsys, conf)
    assert rc == 1
    return fatal_lines(err)


def test_a_good_configuration_passes_and_creates_the_queue(make, capsys, tmp_path):
    rc, err = run_mta(capsys, make("smtpd_recipient_restrictions = permit_mynetworks, reject\n"))
    assert (rc, err) == (0, "")
    assert os.path.isdir(tmp_path / "spool" / "incoming")


def test_an_unknown_restriction_fails_with_file_and_line(make, capsys, tmp_path):
    conf = make("smtpd_recipient_restrictions = permit_mynetworks, reject_everyone\n")
    assert failed_check(capsys, conf) == [
        f"mta check: fatal: {conf}/main.cf, line 4: parameter smtpd_recipient_restrictions: "
        'unknown restriction "reject_everyone"'
    ]
    assert not os.path.exists(tmp_path / "spool")  # nothing is created for a bad configuration


def test_an_unknown_restriction_in_an_override_names_master_cf(make, capsys):
    conf = make(
        master=MASTER_CF + "submission inet n - n - - smtpd\n"
        "  -o smtpd_client_restrictions=permit_sasl_authenticated,rejekt\n"
    )
    assert failed_check(capsys, conf) == [
        f"mta check: fatal: {conf}/master.cf, line 4: parameter smtpd_client_restrictions: "
        'unknown restriction "rejekt"'
    ]


def test_a_bad_netmask_fails(make, capsys):
    conf = make("mynetworks = 127.0.0.1/33\n")
    assert failed_check(capsys, conf) == [
        f"mta check: fatal: {conf}/main.cf, line 4: parameter mynetworks: "
        'bad network pattern "127.0.0.1/33": need network/prefix without host bits'
    ]


def test_a_missing_transport_map_fails(make, capsys, tmp_path):
    conf = make(f"transport_maps = lmdb:{tmp_path}/transport\n")
    [line] = failed_check(capsys, conf)
    assert line.startswith(f"mta check: fatal: {conf}/main.cf, line 4: parameter transport_maps: ")
    assert f"{tmp_path}/transport.lmdb" in line


def test_an_unknown_table_type_fails(make, capsys):
    conf = make("smtpd_client_restrictions = check_client_access nosuch:/etc/access\n")
    [line] = failed_check(capsys, conf)
    assert re.match(
        rf"mta check: fatal: {re.escape(str(conf))}/main\.cf, line 4: .*"
        "unsupported dictionary type: nosuch",
        line,
    ), line


def test_every_bad_value_gets_its_own_line(make, capsys):
    conf = make("message_size_limit = banana\nsmtpd_timeout = later\n")
    assert [line.split(": parameter ")[1].split(":")[0] for line in failed_check(capsys, conf)] == [
        "message_size_limit",
        "smtpd_timeout",
    ]


def test_a_typo_and_an_unimplemented_parameter_are_warnings(make, capsys):
    conf = make("mesage_size_limit = 10\nsmtpd_client_port_logging = yes\n")
    rc, err = run_mta(capsys, conf)
    assert rc == 0
    assert err.splitlines() == [
        f"mta check: warning: {conf}/main.cf, line 4: unused parameter: mesage_size_limit=10",
        f"mta check: warning: {conf}/main.cf, line 5: smtpd_client_port_logging is not "
        "implemented: the setting smtpd_client_port_logging = yes has no effect",
    ]


@pytest.mark.parametrize("command", ["start", "start-fg"])
def test_start_refuses_a_bad_configuration(make, capsys, tmp_path, command):
    conf = make("mynetworks = 10.0.0.1/8\n")
    rc, err = run_mta(capsys, conf, command)
    assert rc == 1
    assert f"mta {command}: fatal: " in err and "10.0.0.1/8" in err
    assert not os.path.exists(tmp_path / "spool" / "pid" / "master.pid")


def test_reload_of_a_stopped_system_says_so_before_validating(make, capsys):
    rc, err = run_mta(capsys, make("message_size_limit = banana\n"), "reload")
    assert rc == 1
    assert "the mail system is not running" in err


def test_a_chroot_the_operator_asked_for_is_refused_not_dropped(make, capsys):
    conf = make(master=MASTER_CF + "relay unix - - y - - smtp\n")
    assert failed_check(capsys, conf) == [
        f"mta check: fatal: {conf}/master.cf, line 4: service relay/unix: chroot is not "
        "supported (a service could not load Python inside the jail); set the chroot column to n"
    ]


def test_postfix_services_mta_does_not_run_are_named_with_their_line(make, capsys):
    conf = make(
        master=MASTER_CF
        + "postlog unix-dgram n - n - 1 postlogd\nrewrite unix - - n - - trivial-rewrite\n"
    )
    rc, err = run_mta(capsys, conf)
    assert rc == 0
    assert err.splitlines() == [
        f"mta check: warning: {conf}/master.cf, line 4: service postlog/unix-dgram: "
        "service type unix-dgram is not supported yet; skipped",
        f"mta check: warning: {conf}/master.cf, line 5: service rewrite/unix: not needed: "
        "address rewriting runs inside smtpd, cleanup and qmgr; skipped",
    ]


def test_a_missing_tls_key_is_a_warning_naming_parameter_and_file(make, capsys, tmp_path):
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=mx.example", "-keyout", str(tmp_path / "server.key"),
         "-out", str(tmp_path / "server.crt")],
        check=True, capture_output=True,
    )  # fmt: skip
    key = tmp_path / "missing.key"
    conf = make(
        f"smtpd_tls_security_level = may\nsmtpd_tls_cert_file = {tmp_path}/server.crt\n"
        f"smtpd_tls_key_file = {key}\n"
    )
    rc, err = run_mta(capsys, conf)
    assert rc == 0
    assert err.splitlines() == [
        f"mta check: warning: {conf}/main.cf, line 6: parameter smtpd_tls_key_file: "
        f"TLS not available: smtpd_tls_key_file: {key}: No such file or directory"
    ]
