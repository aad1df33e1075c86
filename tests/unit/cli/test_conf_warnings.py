"""mta conf -n: typos and parameters that are not implemented are warned, $names are not."""

from mta.cli import conf


def run(capsys, *argv):
    rc = conf.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_a_setting_used_as_dollar_name_is_not_unused(tmp_path, capsys):
    (tmp_path / "main.cf").write_text(
        "my_rcpt = permit_mynetworks, reject\nsmtpd_recipient_restrictions = $my_rcpt\n"
        "typo_knob = 1\n"
    )
    (tmp_path / "master.cf").write_text("smtp inet n - n - - smtpd\n")
    rc, _, err = run(capsys, "-c", str(tmp_path), "-n")
    assert rc == 0
    assert err == f"mta conf: warning: {tmp_path}/main.cf: unused parameter: typo_knob=1\n"


def test_n_marks_parameters_that_are_not_implemented(tmp_path, capsys):
    (tmp_path / "main.cf").write_text("myhostname = mx.example\nsmtpd_client_port_logging = yes\n")
    (tmp_path / "master.cf").write_text("smtp inet n - n - - smtpd\n")
    rc, out, err = run(capsys, "-c", str(tmp_path), "-n")
    assert rc == 0
    assert "smtpd_client_port_logging = yes" in out
    assert err == (
        f"mta conf: warning: {tmp_path}/main.cf, line 2: smtpd_client_port_logging is not implemented: "
        "the setting smtpd_client_port_logging = yes has no effect\n"
    )
