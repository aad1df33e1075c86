"""smtpd.sasl_checks - the restrictions that look at who logged in with SMTP AUTH

SYNOPSIS
    from mta.smtpd.sasl_checks import SASL_SIMPLE, SASL_WITH_ARG, apply_sasl
    result = await apply_sasl(checks, ctx, name, arg)   # from SmtpdChecks._apply

DESCRIPTION
    Restrictions for smtpd_*_restrictions, with Postfix's meaning
    (permit_sasl_authenticated itself lives in smtpd/checks.py):

    check_sasl_access type:table
        Look up the SASL login name in the access(5) table; the result
        acts as in check_client_access, with replies of the form
        "<HOST[ADDR]>: SASL login name rejected: ...". Does nothing for
        a client that did not log in.

    reject_authenticated_sender_login_mismatch
        A logged-in client may use a MAIL FROM address only when
        smtpd_sender_login_maps lists its login name as an owner of
        that address (names separated by commas or spaces, compared
        without regard to case); an address the table does not list is
        refused too: 553 5.7.1 "<SENDER>: Sender address rejected: not
        owned by user LOGIN".

    reject_unauthenticated_sender_login_mismatch
        A client that did not log in may not use an address that has
        an owner in the table: 553 5.7.1 "<SENDER>: Sender address
        rejected: not logged in".

    reject_sender_login_mismatch
        Both of the above.

    reject_known_sender_login_mismatch
        Both, but a logged-in client may use an address the table does
        not list.

    The sender is looked up in its canonical form, as Postfix does:
    user+ext@domain, user@domain, user+ext and user (local domains
    only), @domain (common/addr_find.py). The null sender is never
    refused. A table that fails answers 451 4.3.0 as every access
    table does. A list that names one of the sender login restrictions
    while smtpd_sender_login_maps is empty is a configuration error.

SECURITY
    The login name was verified by the SASL backend; the sender address
    passed the session's parser. Both are only used as table keys and
    quoted in replies.

SEE ALSO
    postconf(5) smtpd_sender_login_maps, mta/smtpd/sasl.py
"""

from __future__ import annotations

import re

from mta.common.addr_find import find_address
from mta.maps import MapError, MapRetry, Maps

SMTPD_NAME_SASL_USER = "SASL login name"  # the reply subject of check_sasl_access
SENDER_LOGIN_MISMATCH = (
    "reject_sender_login_mismatch",
    "reject_authenticated_sender_login_mismatch",
    "reject_known_sender_login_mismatch",
    "reject_unauthenticated_sender_login_mismatch",
)
SASL_SIMPLE = frozenset(SENDER_LOGIN_MISMATCH)  # restrictions without an argument
SASL_WITH_ARG = frozenset({"check_sasl_access"})  # restrictions that take a table
SASL_RESTRICTIONS = SASL_SIMPLE | SASL_WITH_ARG
_OWNER_SPLIT = re.compile(r"[,\s]+")


def login_maps(checks) -> Maps:
    """smtpd_sender_login_maps, opened once per SmtpdChecks; ValueError when empty."""
    maps = getattr(checks, "_sender_login_maps", None)
    if maps is None:
        maps = Maps.from_param(checks.cfg, "smtpd_sender_login_maps")
        if not maps:
            raise ValueError("sender login restrictions need smtpd_sender_login_maps")
        checks._sender_login_maps = maps
    return maps


def check_config(checks, name: str) -> None:
    """Called as a restriction list is parsed: ValueError when name cannot work."""
    if name in SASL_SIMPLE:
        login_maps(checks)


async def apply_sasl(checks, ctx, name: str, arg):
    """One SASL restriction; CHECK_OK, a Verdict, or None (as SmtpdChecks._apply)."""
    st = ctx.st
    if name == "check_sasl_access":
        if not st.sasl_username:
            return None
        keys = [st.sasl_username]
        client = f"{st.client_name}[{st.client_addr}]"
        return await checks._search(ctx, arg, keys, client, SMTPD_NAME_SASL_USER)
    sender = st.sender
    if not sender:
        return None  # before MAIL, and the null sender
    logged_in = bool(st.sasl_username)
    if name == "reject_authenticated_sender_login_mismatch" and not logged_in:
        return None
    if name == "reject_unauthenticated_sender_login_mismatch" and logged_in:
        return None
    owners = _owners(checks, ctx, sender)
    if logged_in:
        if owners is None and name == "reject_known_sender_login_mismatch":
            return None
        if owners is not None and st.sasl_username.lower() in owners:
            return None
        text = f"<{sender}>: Sender address rejected: not owned by user {st.sasl_username}"
        return checks._reject(ctx, 553, "5.7.1", "", text)
    if owners is None:
        return None
    return checks._reject(
        ctx, 553, "5.7.1", "", f"<{sender}>: Sender address rejected: not logged in"
    )


def _owners(checks, ctx, sender: str) -> set[str] | None:
    """The login names that own sender (lower case), or None when it has no entry."""
    canon, cls, _ = checks._resolve(ctx, sender)
    try:
        value = find_address(login_maps(checks), canon, checks.delimiter, local=cls == "local")
    except (MapError, MapRetry) as exc:
        raise checks._lookup_error(sender, exc) from None
    except ValueError:
        return None
    if value is None:
        return None
    return {w.lower() for w in _OWNER_SPLIT.split(value) if w}
