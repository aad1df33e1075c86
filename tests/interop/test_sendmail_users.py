"""sendmail and mailq: who may submit, list and flush (authorized_*_users), and the
options mailq takes."""

import subprocess
import sys

import pytest

from tests.support.sendmail import maildrop, sendmail

pytestmark = pytest.mark.interop


def test_a_user_not_on_authorized_submit_users_cannot_submit(cdir):
    """Postfix exempts nobody from this list, root included."""
    with open(cdir / "main.cf", "a") as f:
        f.write("authorized_submit_users = !root, static:anyone\n")
    for args in (["a@x.example"], ["-t"], ["-bs"]):
        r = sendmail(cdir, *args, stdin=b"To: a@x.example\nSubject: no\n\nbody\n")
        assert r.returncode == 77, (args, r.stderr)
        assert r.stderr == b"sendmail: fatal: User root(0) is not allowed to submit mail\n"
    assert maildrop(cdir) == []


def test_a_user_on_authorized_submit_users_submits(cdir):
    with open(cdir / "main.cf", "a") as f:
        f.write("authorized_submit_users = root\n")
    r = sendmail(cdir, "a@x.example", stdin=b"Subject: yes\n\nbody\n")
    assert r.returncode == 0, r.stderr
    assert len(maildrop(cdir)) == 1


def test_root_may_list_and_flush_whatever_the_lists_say(cdir):
    with open(cdir / "main.cf", "a") as f:
        f.write("authorized_mailq_users = !root\nauthorized_flush_users = !root\n")
    r = sendmail(cdir, "-bp")
    assert (r.returncode, r.stdout) == (0, b"Mail queue is empty\n"), r.stderr
    r = sendmail(cdir, "-q")  # allowed; only the mail system is down
    assert r.returncode == 69 and b"the mail system is down" in r.stderr, r.stderr


def mailq(cdir, *args):
    code = "import sys; from mta.cli.sendmail import main; sys.exit(main(sys.argv[1:], 'mailq'))"
    return subprocess.run(
        [sys.executable, "-c", code, "-C", str(cdir), *args], capture_output=True, timeout=30
    )


def test_mailq_refuses_an_unknown_flag_with_its_usage(cdir):
    for bad in ("-x", "-Z", "-t", "someone"):
        r = mailq(cdir, bad)
        assert r.returncode == 64, (bad, r.stderr)
        assert r.stdout == b""
        what = "invalid option" if bad.startswith("-") else "unexpected argument"
        assert r.stderr.decode() == (
            f"mailq: fatal: {what} {bad}\nusage: mailq [-C config_dir] [-v]\n"
        )
    r = mailq(cdir, "-v")
    assert (r.returncode, r.stdout) == (0, b"Mail queue is empty\n"), r.stderr


def test_sendmail_refuses_an_unknown_flag_in_the_fatal_style(cdir):
    r = sendmail(cdir, "-Z", "a@x.example")
    assert r.returncode == 64
    assert r.stderr.decode().startswith("sendmail: fatal: unsupported option -Z\nusage: sendmail")
