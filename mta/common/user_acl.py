"""common.user_acl - who may submit mail, view the queue or flush it

SYNOPSIS
    from mta.common.user_acl import AccessDenied, check_user, SUBMIT_ACL
    try:
        check_user(cfg, SUBMIT_ACL)             # the real uid of this process
    except AccessDenied as exc:
        fail(exc.status, str(exc))              # "User bob(1001) is not allowed to ..."

DESCRIPTION
    authorized_submit_users (sendmail, postdrop), authorized_mailq_users
    (mailq, "mta queue", sendmail -bp) and authorized_flush_users
    ("mta flush", "mta queue -f/-i/-s", sendmail -q) work as in Postfix:
    the real uid is looked up in the password file, "unknown" standing
    for a uid that is not there, and the login name is matched against
    the list (a match list of names, "!name", "/file/name" and
    "type:table" items; the default static:anyone lets everybody in, an
    empty list nobody). For the mailq and flush lists root and mail_owner
    are always allowed; the submit list applies to everybody, root too.

    A refusal is AccessDenied with Postfix's text and status 77
    (EX_NOPERM); a list whose table cannot be read refuses too, with
    status 75 (EX_TEMPFAIL): an unreadable list never lets anybody in.

SECURITY
    Runs in the command of an unprivileged user. The list comes from
    main.cf; the only input from the user is the process's real uid.

SEE ALSO
    postconf(5): authorized_submit_users, authorized_mailq_users,
    authorized_flush_users; mta/common/match_list.py
"""

from __future__ import annotations

import os
import pwd

from mta.common.match_list import NameList
from mta.maps import MapError, MapRetry

SUBMIT_ACL = "authorized_submit_users"
MAILQ_ACL = "authorized_mailq_users"
FLUSH_ACL = "authorized_flush_users"

EX_NOPERM = 77  # sysexits.h: permission denied
EX_TEMPFAIL = 75  # sysexits.h: try again later

# what each list guards, as the refusal says it; and whether root and mail_owner pass
ACL_ACTIONS: dict[str, tuple[str, bool]] = {
    SUBMIT_ACL: ("submit mail", False),
    MAILQ_ACL: ("view the mail queue", True),
    FLUSH_ACL: ("flush the mail queue", True),
}


class AccessDenied(Exception):
    """The invoking user may not do this; str() is the one-line reason."""

    def __init__(self, text: str, status: int = EX_NOPERM) -> None:
        super().__init__(text)
        self.status = status


def user_name(uid: int) -> str:
    """The login name of uid, or "unknown" as Postfix says for a uid not in passwd."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return "unknown"


def _owner_uid(cfg) -> int | None:
    try:
        return pwd.getpwnam(cfg.get("mail_owner")).pw_uid
    except KeyError:
        return None


def check_user(cfg, param: str, uid: int | None = None) -> None:
    """Raise AccessDenied unless the user of uid (default: the real uid) is on param's list."""
    uid = os.getuid() if uid is None else uid
    action, privileged_pass = ACL_ACTIONS[param]
    if privileged_pass and (uid == 0 or uid == _owner_uid(cfg)):
        return
    name = user_name(uid)
    try:
        allowed = NameList(cfg.get_list(param), cfg, where=param).match(name)
    except (MapError, MapRetry) as exc:
        raise AccessDenied(f"{param}: {exc}", EX_TEMPFAIL) from None
    if not allowed:
        raise AccessDenied(f"User {name}({uid}) is not allowed to {action}")
