"""Child command line and environment."""

from hypothesis import given
from hypothesis import strategies as st

from mta.config.master_cf import ServiceEntry
from mta.master.mail_server import parse_service_argv
from mta.master.spawn import build_child_argv, child_env


def entry(**kw) -> ServiceEntry:
    base = dict(
        name="proxymap",
        type="unix",
        private=True,
        unpriv=True,
        chroot=False,
        wakeup=0,
        wakeup_used_only=False,
        maxproc=100,
        command="proxymap",
    )
    base.update(kw)
    return ServiceEntry(**base)


def test_argv_layout():
    e = entry(args=["extra"], overrides={"max_idle": "5s"})
    assert build_child_argv(e, "mta.proxymap", "/etc/mta", python="py") == [
        "py",
        "-m",
        "mta.proxymap",
        "-n",
        "proxymap",
        "-t",
        "unix",
        "-c",
        "/etc/mta",
        "-o",
        "max_idle=5s",
        "-u",
        "extra",
    ]


def test_privileged_service_has_no_u():
    assert "-u" not in build_child_argv(entry(unpriv=False), "m", "/c", python="py")


def test_socket_count_and_verbose():
    argv = build_child_argv(entry(), "m", "/c", verbose=2, nsock=2, python="py")
    assert argv[-5:] == ["-s", "2", "-u", "-v", "-v"]


def test_env_names_the_service_and_sets_safe_path():
    env = child_env(entry(), log_to_fd=True, base={"PATH": "/bin", "MTA_LOG_STDOUT": "0"})
    assert env["MTA_SERVICE"] == "proxymap/unix"
    assert env["PYTHONSAFEPATH"] == "1"
    assert env["MTA_LOG_STDOUT"] == "1"
    assert env["PATH"] == "/bin"


def test_env_without_log_fd_drops_stdout_logging():
    env = child_env(entry(), log_to_fd=False, base={"MTA_LOG_STDOUT": "1"})
    assert "MTA_LOG_STDOUT" not in env


word = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=8)
name = st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True)


@given(
    svc=word.filter(lambda s: not s.startswith("-")),
    overrides=st.dictionaries(name, word, max_size=3),
    args=st.lists(word.filter(lambda s: not s.startswith("-")), max_size=3),
    unpriv=st.booleans(),
    nsock=st.integers(1, 4),
    verbose=st.integers(0, 2),
)
def test_parse_reads_back_what_build_writes(svc, overrides, args, unpriv, nsock, verbose):
    e = entry(name=svc, overrides=overrides, args=args, unpriv=unpriv)
    argv = build_child_argv(e, "m", "/cfg", verbose=verbose, nsock=nsock, python="py")
    parsed = parse_service_argv(argv[3:])
    assert parsed.name == svc
    assert parsed.type == "unix"
    assert parsed.config_dir == "/cfg"
    assert parsed.overrides == overrides
    assert parsed.args == args
    assert parsed.unpriv == unpriv
    assert parsed.nsock == nsock
    assert parsed.verbose == verbose
