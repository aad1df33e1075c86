"""mta conf against Postfix's own postconf on the same files."""

import re
import shutil
import subprocess
import sys

import pytest

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(shutil.which("postconf") is None, reason="postconf not installed"),
]

MAIN_CF = """\
# A main.cf as an administrator writes it.
myhostname = mx.example.org
mydomain = example.org

mydestination = $myhostname,
    localhost.$mydomain,
  # a comment inside a continued value
    localhost
relayhost = [smarthost.example.org]:587
smtpd_recipient_restrictions = permit_mynetworks,
\treject_unauth_destination
message_size_limit = 20480000
"""


def mta_conf(*args):
    return subprocess.run(
        [sys.executable, "-m", "mta", "conf", *args], capture_output=True, text=True, check=True
    ).stdout


def postconf(*args):
    return subprocess.run(["postconf", *args], capture_output=True, text=True, check=True).stdout


@pytest.fixture
def two_dirs(tmp_path):
    dirs = []
    for name in ("mta", "postfix"):
        d = tmp_path / name
        d.mkdir()
        (d / "main.cf").write_text(MAIN_CF)
        (d / "master.cf").write_text("smtp inet n - y - - smtpd\n")
        dirs.append(d)
    return dirs


def test_n_prints_the_same_settings(two_dirs):
    ours, theirs = two_dirs
    expected = [
        line
        for line in postconf("-c", str(theirs), "-n").splitlines()
        if not line.startswith("config_directory =")
    ]
    assert mta_conf("-c", str(ours), "-n").splitlines() == expected


def test_x_expands_the_same_way(two_dirs):
    ours, theirs = two_dirs
    names = ["mydestination", "myhostname"]
    assert mta_conf("-c", str(ours), "-x", *names) == postconf("-c", str(theirs), "-x", *names)


@pytest.mark.parametrize(
    "edit",
    [
        ["-e", "mydomain=other.org", "inet_interfaces = loopback-only"],
        ["-e", "mydestination=a, b"],
        ["-X", "relayhost", "smtpd_recipient_restrictions"],
        ["-#", "mydestination"],
    ],
)
def test_edits_give_the_same_file(two_dirs, edit):
    ours, theirs = two_dirs
    mta_conf("-c", str(ours), *edit)
    postconf("-c", str(theirs), *edit)
    assert (ours / "main.cf").read_text() == (theirs / "main.cf").read_text()


FULL_TEMPLATES = "\n".join(
    f"{kind}_template = <<{'EOF'}\n"
    "Charset: us-ascii\n"
    "From: MAILER-DAEMON (Mail Delivery System)\n"
    f"Subject: {kind}\n\n"
    f"The {kind} text of $myhostname in $mydomain; mail is kept\n"
    "${maximal_queue_lifetime_days} days and warned about after\n"
    "${delay_warning_time_hours} hours, at $$0 cost.\n"
    "EOF\n"
    for kind in ("failure", "delay", "success", "verify")
)


def test_b_shows_the_same_notice_texts(two_dirs, tmp_path):
    ours, theirs = two_dirs
    for d in (ours, theirs):
        with open(d / "main.cf", "a") as f:
            f.write("delay_warning_time = 4h\nmaximal_queue_lifetime = 3d\n")
    template = tmp_path / "bounce.cf"
    template.write_text(FULL_TEMPLATES)
    assert mta_conf("-c", str(ours), "-b", str(template)) == postconf(
        "-c", str(theirs), "-b", str(template)
    )


# the policy, content-filter, milter, postscreen, spawn and time-limit families
FAMILIES = re.compile(
    r"(milter_.*|.*_milters|postscreen_.*|dnsblog_.*|smtpd_policy_service_.*|smtpd_proxy_.*"
    r"|content_filter|default_filter_nexthop|internal_mail_filter_classes"
    r"|receive_override_options|.*xclient.*|.*xforward.*|.*memcache.*|.*_time_limit"
    r"|export_environment|command_time_limit|daemon_timeout|ipc_timeout)\Z"
)


@pytest.fixture
def empty_dir(tmp_path):
    """A configuration directory with empty files: no Debian master.cf transports."""
    d = tmp_path / "empty"
    d.mkdir()
    (d / "main.cf").write_text("")
    (d / "master.cf").write_text("")
    return d


def test_d_shows_postfix_defaults_of_the_policy_and_filter_families(empty_dir):
    theirs = [
        line
        for line in postconf("-c", str(empty_dir), "-d").splitlines()
        if FAMILIES.match(line.split(" =", 1)[0])
    ]
    names = [line.split(" =", 1)[0] for line in theirs]
    assert len(names) > 80  # milter_*, postscreen_*, smtpd_policy_service_* ... all there
    assert mta_conf("-c", str(empty_dir), "-d", *names).splitlines() == theirs


def test_d_and_n_know_the_time_limit_of_a_spawn_service(empty_dir):
    (empty_dir / "master.cf").write_text(
        "policyd-spf unix - n n - 0 spawn user=nobody argv=/usr/bin/policyd-spf\n"
    )
    name = "policyd-spf_time_limit"
    assert mta_conf("-c", str(empty_dir), "-d", name) == postconf("-c", str(empty_dir), "-d", name)
    (empty_dir / "main.cf").write_text(f"{name} = 3600\n")
    ours = subprocess.run(
        [sys.executable, "-m", "mta", "conf", "-c", str(empty_dir), "-n"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert ours.stdout == f"{name} = 3600\n"
    assert ours.stderr == ""  # no "unused parameter" for the spawn service's limit
