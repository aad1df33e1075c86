"""mta conf: postconf's flags on a real configuration directory."""

import json

import pytest

from mta.cli import conf

MASTER_CF = """\
smtp      inet  n       -       n       -       -       smtpd
  -o syslog_name=mta/smtp
pickup    unix  n       -       n       60      1       pickup
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
"""


@pytest.fixture
def cdir(tmp_path):
    (tmp_path / "main.cf").write_text(
        "# site settings\nmyhostname = mx.example\nmydomain = example\nbogus_knob = 1\n"
    )
    (tmp_path / "master.cf").write_text(MASTER_CF)
    return tmp_path


def run(capsys, *argv):
    rc = conf.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_n_lists_main_cf_settings_and_warns_about_unused(cdir, capsys):
    rc, out, err = run(capsys, "-c", str(cdir), "-n")
    assert rc == 0
    assert out == "bogus_knob = 1\nmydomain = example\nmyhostname = mx.example\n"
    assert err == f"mta conf: warning: {cdir}/main.cf: unused parameter: bogus_knob=1\n"


def test_named_parameters_show_raw_values(cdir, capsys):
    rc, out, _ = run(capsys, "-c", str(cdir), "myorigin", "myhostname")
    assert out == "myorigin = $myhostname\nmyhostname = mx.example\n"


def test_x_expands_and_h_hides_names(cdir, capsys):
    _, out, _ = run(capsys, "-c", str(cdir), "-x", "-h", "myorigin")
    assert out == "mx.example\n"


def test_d_shows_defaults_even_when_set(cdir, capsys):
    _, out, _ = run(capsys, "-c", str(cdir), "-d", "smtpd_timeout", "myhostname")
    assert out.splitlines()[0] == "smtpd_timeout = ${stress?{10}:{300}}s"
    assert out.splitlines()[1] != "myhostname = mx.example"


def test_unknown_name_warns(cdir, capsys):
    rc, out, err = run(capsys, "-c", str(cdir), "no_such_param")
    assert (rc, out) == (0, "")
    assert "mta conf: warning: no_such_param: unknown parameter" in err


def test_everything_includes_transport_parameters(cdir, capsys):
    _, out, _ = run(capsys, "-c", str(cdir))
    names = [line.split(" =")[0] for line in out.splitlines()]
    assert names == sorted(names)
    assert "relay_destination_concurrency_limit" in names
    assert "pickup_destination_concurrency_limit" not in names
    assert "relay_extra_recipient_limit = $default_extra_recipient_limit" in out


def test_e_edits_in_place_keeping_comments(cdir, capsys):
    rc, _, _ = run(capsys, "-c", str(cdir), "-e", "mydomain=other.example", "relayhost = [gw]:25")
    assert rc == 0
    assert (cdir / "main.cf").read_text() == (
        "# site settings\nmyhostname = mx.example\nmydomain = other.example\nbogus_knob = 1\n"
        "relayhost = [gw]:25\n"
    )


def test_e_without_equals_fails_without_touching_main_cf(cdir, capsys):
    before = (cdir / "main.cf").read_text()
    rc, _, err = run(capsys, "-c", str(cdir), "-e", "mydomain")
    assert rc == 1 and "fatal" in err and '"mydomain"' in err
    assert (cdir / "main.cf").read_text() == before


def test_X_removes_and_hash_comments_out(cdir, capsys):
    run(capsys, "-c", str(cdir), "-X", "bogus_knob")
    run(capsys, "-c", str(cdir), "-#", "mydomain")
    assert (cdir / "main.cf").read_text() == (
        "# site settings\nmyhostname = mx.example\n#mydomain = example\n"
    )


def test_M_lists_services_and_selects_by_name_and_type(cdir, capsys):
    _, out, err = run(capsys, "-c", str(cdir), "-M", "smtp/unix", "nosuch/inet")
    assert out == "smtp       unix  -       -       n       -       -       smtp\n"
    assert 'unmatched request: "nosuch/inet"' in err
    _, out, _ = run(capsys, "-c", str(cdir), "-M", "smtp")
    assert len(out.splitlines()) == 2
    assert "-o syslog_name=mta/smtp" in out.splitlines()[0]


def test_M_json(cdir, capsys):
    _, out, _ = run(capsys, "-c", str(cdir), "-M", "--json", "pickup")
    (svc,) = json.loads(out)
    assert (svc["service"], svc["wakeup"], svc["maxproc"], svc["line"]) == ("pickup", 60, 1, 3)


def test_P_lists_overrides(cdir, capsys):
    _, out, _ = run(capsys, "-c", str(cdir), "-P")
    assert out == "smtp/inet/syslog_name = mta/smtp\n"


def test_json_parameters(cdir, capsys):
    _, out, _ = run(capsys, "-c", str(cdir), "--json", "-x", "myorigin", "mydomain")
    assert json.loads(out) == {"myorigin": "mx.example", "mydomain": "example"}


def test_bad_master_cf_is_one_line_with_file_and_line(cdir, capsys):
    (cdir / "master.cf").write_text("smtp inet n - n - - smtpd\nbroken line\n")
    rc, out, err = run(capsys, "-c", str(cdir), "-M")
    assert rc == 1
    assert err == (
        f"mta conf: fatal: {cdir}/master.cf, line 2: expected 8 or more fields "
        "(service type private unpriv chroot wakeup maxproc command), got 2\n"
    )


def test_fold_wraps_long_values(cdir, capsys):
    (cdir / "main.cf").write_text(
        "mydestination = " + ", ".join(f"d{i}.example" for i in range(20))
    )
    _, out, _ = run(capsys, "-c", str(cdir), "-f", "mydestination")
    lines = out.splitlines()
    assert len(lines) > 1 and all(len(x) <= 80 for x in lines)
    assert all(x.startswith("    ") for x in lines[1:])
