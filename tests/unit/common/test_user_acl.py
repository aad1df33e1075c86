"""authorized_submit_users, authorized_mailq_users, authorized_flush_users."""

import pwd

import pytest

from mta.common.user_acl import (
    EX_NOPERM,
    EX_TEMPFAIL,
    FLUSH_ACL,
    MAILQ_ACL,
    SUBMIT_ACL,
    AccessDenied,
    check_user,
)
from mta.config import Config

NOBODY = pwd.getpwnam("nobody").pw_uid
UNKNOWN_UID = 65000  # in no password file of a test machine
assert all(p.pw_uid != UNKNOWN_UID for p in pwd.getpwall())


def config(tmp_path, text: str, owner: str = "root") -> Config:
    (tmp_path / "main.cf").write_text(f"mail_owner = {owner}\n{text}")
    return Config(str(tmp_path))


def refusal(cfg, param, uid):
    with pytest.raises(AccessDenied) as exc:
        check_user(cfg, param, uid)
    return exc.value


@pytest.mark.parametrize("param", [SUBMIT_ACL, MAILQ_ACL, FLUSH_ACL])
def test_by_default_everybody_may(tmp_path, param):
    cfg = config(tmp_path, "")
    for uid in (0, NOBODY, UNKNOWN_UID):
        check_user(cfg, param, uid)


@pytest.mark.parametrize(
    "param, action",
    [
        (SUBMIT_ACL, "submit mail"),
        (MAILQ_ACL, "view the mail queue"),
        (FLUSH_ACL, "flush the mail queue"),
    ],
)
def test_a_negated_name_is_refused_with_postfix_words(tmp_path, param, action):
    cfg = config(tmp_path, f"{param} = !nobody, static:anyone\n")
    denied = refusal(cfg, param, NOBODY)
    assert str(denied) == f"User nobody({NOBODY}) is not allowed to {action}"
    assert denied.status == EX_NOPERM


def test_root_and_mail_owner_may_always_view_and_flush(tmp_path):
    cfg = config(tmp_path, f"{MAILQ_ACL} =\n{FLUSH_ACL} =\n", owner="nobody")
    for param in (MAILQ_ACL, FLUSH_ACL):
        check_user(cfg, param, 0)
        check_user(cfg, param, NOBODY)  # mail_owner
        refusal(cfg, param, UNKNOWN_UID)


def test_submit_applies_to_root_too(tmp_path):
    cfg = config(tmp_path, f"{SUBMIT_ACL} = !root, static:anyone\n")
    assert str(refusal(cfg, SUBMIT_ACL, 0)) == "User root(0) is not allowed to submit mail"
    check_user(cfg, SUBMIT_ACL, NOBODY)


def test_an_empty_submit_list_refuses_everybody(tmp_path):
    cfg = config(tmp_path, f"{SUBMIT_ACL} =\n")
    for uid in (0, NOBODY):
        refusal(cfg, SUBMIT_ACL, uid)


def test_a_uid_without_a_passwd_entry_is_unknown(tmp_path):
    cfg = config(tmp_path, f"{MAILQ_ACL} = root\n")
    assert str(refusal(cfg, MAILQ_ACL, UNKNOWN_UID)).startswith(f"User unknown({UNKNOWN_UID}) ")
    cfg = config(tmp_path, f"{MAILQ_ACL} = unknown\n")
    check_user(cfg, MAILQ_ACL, UNKNOWN_UID)


def test_names_in_a_table_and_a_file(tmp_path):
    (tmp_path / "submitters").write_text("nobody ok\n")
    (tmp_path / "list").write_text("# who may\nbin\n")
    cfg = config(tmp_path, f"{SUBMIT_ACL} = texthash:{tmp_path}/submitters, {tmp_path}/list\n")
    check_user(cfg, SUBMIT_ACL, NOBODY)
    check_user(cfg, SUBMIT_ACL, pwd.getpwnam("bin").pw_uid)
    refusal(cfg, SUBMIT_ACL, 0)


def test_a_part_of_a_name_is_no_match(tmp_path):
    cfg = config(tmp_path, f"{SUBMIT_ACL} = body\n")
    refusal(cfg, SUBMIT_ACL, NOBODY)


def test_a_table_that_cannot_be_read_refuses(tmp_path):
    cfg = config(tmp_path, f"{SUBMIT_ACL} = lmdb:{tmp_path}/missing\n")
    denied = refusal(cfg, SUBMIT_ACL, NOBODY)
    assert denied.status == EX_TEMPFAIL
    assert str(denied).startswith(f"{SUBMIT_ACL}: ")
