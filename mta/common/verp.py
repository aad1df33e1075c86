"""common.verp - variable envelope return paths: delimiters and the senders they make

SYNOPSIS
    from mta.common.verp import VERP_ATTR, delimiters_problem, message_delimiters, verp_sender
    delimiters_problem("+=", "-=+")        # None: usable; else what is wrong with them
    message_delimiters(msg.attrs, msg.sender, "-=+")   # "+=" or None: deliver as usual
    verp_sender("+=", "owner-list@example.com", "user@domain.tld")
        # -> "owner-list+user=domain.tld@example.com"
    verp_recipient("owner-list+user=domain.tld@example.com", "+=")   # "user@domain.tld"

DESCRIPTION
    A message submitted with VERP (SMTP "MAIL FROM:<...> XVERP[=xy]",
    "sendmail -XV[xy]", a QMQP sender ending in "-@[]") carries its
    two delimiter characters in the envelope attribute VERP_ATTR. The
    queue manager then hands it out one recipient per delivery request,
    each with a sender of its own that names that recipient:
    verp_sender() puts the first delimiter and the recipient's local
    part after the sender's local part, then the second delimiter and
    the recipient's domain, then "@" and the sender's domain. A
    recipient without a domain gets neither the second delimiter nor a
    domain; a sender without a domain keeps none. The recipient given
    should be the original one (as first received), which is what a
    list manager that decodes these addresses knows.

    verp_recipient() reads such an address back (the bounce address
    handler, mta/bouncein, learns whom an asynchronous bounce is about):
    None when the address has no first delimiter, or no second one after
    it, or either half would be empty.

    delimiters_problem() applies verp_delimiter_filter: exactly two
    characters, each one of the filter's. message_delimiters() is what
    the readers of a queue file ask: the delimiters to use, or None when
    there are none, the sender is null (VERP needs a sender to encode
    into) or the delimiters do not pass the filter.

SECURITY
    Pure functions over addresses that came from untrusted senders;
    the result goes into a delivery request, never into a shell.

SEE ALSO
    Postfix VERP_README; mta/qmgr/manager.py (one recipient per request),
    mta/smtpd/session.py (XVERP), mta/cli/sendmail.py (-XV)
"""

from __future__ import annotations

VERP_ATTR = "verp_delimiters"  # envelope attribute: the message's two VERP delimiters


def delimiters_problem(delims: str, allowed: str) -> str | None:
    """None when delims are two characters from allowed; else what is wrong."""
    if len(delims) != 2:
        return "bad VERP delimiter character count"
    if delims[0] not in allowed:
        return "bad first VERP delimiter character"
    if delims[1] not in allowed:
        return "bad second VERP delimiter character"
    return None


def message_delimiters(attrs: dict, sender: str, allowed: str) -> str | None:
    """The VERP delimiters a queued message asks for, or None to deliver it as usual."""
    delims = attrs.get(VERP_ATTR)
    if not delims or not sender or delimiters_problem(delims, allowed):
        return None
    return delims


def verp_sender(delims: str, sender: str, recipient: str) -> str:
    """sender with recipient encoded in it: prefix@origin -> prefix+user=domain@origin."""
    local, at, origin = sender.rpartition("@")
    if not at:
        local, origin = sender, ""
    user, at, domain = recipient.rpartition("@")
    if not at:
        user, domain = recipient, ""
    out = local + delims[0] + user
    if domain:
        out += delims[1] + domain
    if origin:
        out += "@" + origin
    return out


def verp_recipient(address: str, delims: str) -> str | None:
    """The recipient a VERP address names (verp_sender() undone), or None when it names none.

    prefix+user=domain@origin -> user@domain. The split is at the first
    first-delimiter (verp_sender() puts it right after the sender's local
    part, so that part must not contain it) and the last second-delimiter
    (a recipient domain never contains it; its local part may)."""
    if len(delims) != 2:
        return None
    local = address.rpartition("@")[0] if "@" in address else address
    start = local.find(delims[0])
    if start < 0:
        return None
    user, sep, domain = local[start + 1 :].rpartition(delims[1])
    if not sep or not user or not domain:
        return None
    return f"{user}@{domain}"
