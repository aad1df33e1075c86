"""spawn's master.cf attributes, account rules, time limit and environment."""

from __future__ import annotations

import os
import pwd

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mta.config import load_config
from mta.spawn import (
    SPAWN_DEFAULT_PATH,
    SpawnAttrs,
    SpawnConfigError,
    command_account,
    command_environment,
    command_time_limit,
    parse_spawn_args,
)
from tests.support.instance import make_instance


def test_user_and_argv_are_parsed():
    attrs = parse_spawn_args(["user=nobody", "argv=/usr/bin/policyd-spf", "-v", "x y"])
    assert attrs == SpawnAttrs("nobody", "", ["/usr/bin/policyd-spf", "-v", "x y"])


def test_group_after_colon_and_braced_words():
    attrs = parse_spawn_args(["{ user=nobody:nogroup }", "argv=/bin/cat", "{ a b }"])
    assert (attrs.user, attrs.group, attrs.argv) == ("nobody", "nogroup", ["/bin/cat", "a b"])


def test_argv_takes_every_later_word_even_attribute_like_ones():
    attrs = parse_spawn_args(["user=nobody", "argv=/bin/echo", "user=root", "argv=x"])
    assert attrs.user == "nobody"
    assert attrs.argv == ["/bin/echo", "user=root", "argv=x"]


def test_empty_argv_value_takes_the_next_word():
    assert parse_spawn_args(["user=nobody", "argv=", "/bin/cat"]).argv == ["/bin/cat"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["argv=/bin/cat"], "missing user= command-line attribute"),
        (["user=nobody"], "missing argv= command-line attribute"),
        (["user=nobody", "argv="], "argv= names no command"),
        (["user=", "argv=/bin/cat"], "user= names no user"),
        (["user=nobody", "flags=R", "argv=/bin/cat"], "unknown attribute name: flags"),
        (["nobody", "argv=/bin/cat"], 'bad command attribute "nobody"'),
        ([], "missing user= command-line attribute"),
    ],
)
def test_bad_attributes_are_refused(args, message):
    with pytest.raises(SpawnConfigError, match=message):
        parse_spawn_args(args)


def _account(value: str, owner: str = "postfix") -> tuple[int, int]:
    return command_account(parse_spawn_args([f"user={value}", "argv=/bin/cat"]), owner)


def test_account_of_an_ordinary_user():
    pw = pwd.getpwnam("nobody")
    assert _account("nobody") == (pw.pw_uid, pw.pw_gid)


def test_group_replaces_the_users_group():
    import grp

    gid = grp.getgrnam("daemon").gr_gid
    assert _account("nobody:daemon") == (pwd.getpwnam("nobody").pw_uid, gid)


@pytest.mark.parametrize(
    "value, message",
    [
        ("root", "specifies root privileges"),
        ("0", "specifies root privileges"),
        ("nobody:root", "privileged group id 0"),
        ("nobody:0", "privileged group id 0"),
        ("no-such-user-here", "unknown user name: no-such-user-here"),
        ("nobody:no-such-group-here", "unknown group name: no-such-group-here"),
    ],
)
def test_root_and_unknown_accounts_are_refused(value, message):
    with pytest.raises(SpawnConfigError, match=message):
        _account(value)


def test_mail_owner_is_refused():
    with pytest.raises(SpawnConfigError, match="mail system owner nobody"):
        _account("nobody", owner="nobody")


def test_mail_owner_group_is_refused():
    owner = pwd.getpwnam("daemon")
    import grp

    group = grp.getgrgid(owner.pw_gid).gr_name
    with pytest.raises(SpawnConfigError, match=f"mail system owner daemon group id {owner.pw_gid}"):
        _account(f"nobody:{group}", owner="daemon")


def test_unknown_mail_owner_refuses_nothing_more():
    assert _account("nobody", owner="no-such-owner")[0] == pwd.getpwnam("nobody").pw_uid


def test_time_limit_is_per_service_then_command_time_limit(tmp_path):
    cdir = make_instance(
        tmp_path,
        "policyd-spf_time_limit = 3600\ncommand_time_limit = 50s\n",
        "policyd-spf unix - n n - 0 spawn user=nobody argv=/bin/cat\n"
        "other unix - n n - 0 spawn user=nobody argv=/bin/cat\n",
    )
    cfg = load_config(str(cdir))
    assert command_time_limit(cfg, "policyd-spf") == 3600
    assert command_time_limit(cfg, "other") == 50


def test_time_limit_default_is_1000s(tmp_path):
    cfg = load_config(str(make_instance(tmp_path)))
    assert command_time_limit(cfg, "policy") == 1000


def test_environment_is_export_environment_and_a_path(tmp_path):
    cfg = load_config(str(make_instance(tmp_path, "export_environment = TZ LANG SECRET_X\n")))
    env = command_environment(cfg, {"TZ": "UTC", "HOME": "/root", "SECRET_X": "1"})
    assert env == {"TZ": "UTC", "SECRET_X": "1", "PATH": SPAWN_DEFAULT_PATH}
    env = command_environment(cfg, {"PATH": "/x"})
    assert env == {"PATH": SPAWN_DEFAULT_PATH}  # PATH not exported: the default one
    assert "HOME" not in command_environment(cfg, dict(os.environ))


_words = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12
)


@given(st.lists(_words, max_size=6))
def test_any_words_parse_or_give_one_config_error(words):
    try:
        attrs = parse_spawn_args(words)
    except SpawnConfigError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert attrs.user and attrs.argv and attrs.argv[0]


@given(
    st.from_regex(r"[a-z][a-z0-9_-]{0,8}", fullmatch=True),
    st.lists(_words.filter(lambda w: w.strip() == w and w), min_size=1, max_size=5),
)
def test_argv_round_trips(user, argv):
    words = [f"user={user}", "argv=" + argv[0], *argv[1:]]
    if argv[0].startswith("{") and argv[0].endswith("}"):
        return
    attrs = parse_spawn_args(words)
    expected = [
        a[1:-1].strip() if a[0] == "{" and a[-1] == "}" and len(a) > 1 else a for a in argv[1:]
    ]
    assert attrs.user == user
    assert attrs.argv == [argv[0], *expected]


def test_mta_check_warns_about_attributes_spawn_refuses(tmp_path):
    from mta.config.validate import config_problems

    cdir = make_instance(
        tmp_path,
        "",
        "bad unix - n n - 0 spawn user=root argv=/bin/cat\n"
        "worse unix - n n - 0 spawn user=nobody\n"
        "good unix - n n - 0 spawn user=nobody argv=/bin/cat\n",
    )
    problems = [p for p in config_problems(load_config(str(cdir))) if "service " in str(p)]
    texts = sorted(str(p) for p in problems)
    assert len(texts) == 2 and not any(p.fatal for p in problems)
    assert texts[0].endswith(
        "line 1: service bad/unix: " + "user= command-line attribute specifies root privileges"
    )
    assert texts[1].endswith("line 2: service worse/unix: missing argv= command-line attribute")
