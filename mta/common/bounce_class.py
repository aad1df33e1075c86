"""common.bounce_class - which kind of failure a reply is (bounce classes)

SYNOPSIS
    from mta.common.bounce_class import Classifier, classifier_for
    classes = classifier_for(cfg)                 # once per process
    classes.classify("5.1.1", "550 5.1.1 <u@example.com>: user unknown")
    # "invalid_mailbox"
    classes.of_status(st)                         # a RecipientStatus, "" when delivered

DESCRIPTION
    A failed or deferred recipient gets one class from the reply that
    failed it, so that a bulk sender can tell a dead address from a full
    mailbox or a block: invalid_mailbox, inactive_mailbox, mailbox_full,
    domain_not_found, spam_block, policy (authentication: DMARC, SPF,
    DKIM, reverse DNS), rate_limited, routing, protocol, content,
    unclassified, and complaint for feedback reports (ARF).

    The lookup key is the enhanced status code, one space, and the
    reply: the remote server's reply as it came (diag_text) when there
    is one, else mta's own reason ("5.1.1 550 5.1.1 <u@example.com>:
    user unknown"). Tables named in bounce_class_maps (usually regexp:
    or pcre:) are asked first; then the built-in table
    mta/common/bounce_classes.regexp, which is shipped with the package
    and commented rule by rule. An answer that is not a class name is
    logged once and ignored. A table that cannot be asked falls through
    to the built-in one: a class is advice and never holds mail up.

    The class goes in the maillog line after the status text
    ("status=bounced (...) class=invalid_mailbox"), in the bounce and
    defer logs, the notice's per-recipient part (X-Bounce-Class:) and
    the event log.

SECURITY
    Reply texts come from remote servers; they are only matched against
    the administrator's patterns, never interpreted. Keys are cut to
    KEY_LIMIT characters so a huge reply costs bounded time.
"""

from __future__ import annotations

import os

from mta import log
from mta.common.dsn import ACTION_DELAYED, ACTION_FAILED, RecipientStatus
from mta.maps import MapError, MapRetry, Maps
from mta.maps.dict_regexp import RegexpDict
from mta.maps.text import preload_source

CLASSES = (
    "invalid_mailbox",
    "inactive_mailbox",
    "mailbox_full",
    "domain_not_found",
    "spam_block",
    "policy",
    "rate_limited",
    "routing",
    "protocol",
    "content",
    "unclassified",
    "complaint",
)
UNCLASSIFIED = "unclassified"
COMPLAINT = "complaint"
KEY_LIMIT = 2000  # characters of reply matched against the patterns
BUILTIN_TABLE = os.path.join(os.path.dirname(__file__), "bounce_classes.regexp")
preload_source(BUILTIN_TABLE)  # read while the service may still be root

_builtin: RegexpDict | None = None


def builtin_table() -> RegexpDict:
    """The shipped table, compiled once per process."""
    global _builtin
    if _builtin is None:
        _builtin = RegexpDict(f"regexp:{BUILTIN_TABLE}", BUILTIN_TABLE)
    return _builtin


def class_key(dsn: str, text: str) -> str:
    """The lookup key: code, space, reply on one line and of bounded length."""
    text = " ".join(text.split())
    return f"{dsn} {text}"[:KEY_LIMIT]


class Classifier:
    """The administrator's tables, then the built-in one."""

    def __init__(self, user_maps: Maps | None = None) -> None:
        self.user = user_maps
        self.builtin = builtin_table()
        self.warned: set[str] = set()

    def classify(self, dsn: str, text: str) -> str:
        """The class of a failure with code dsn and reply text."""
        key = class_key(dsn, text)
        if self.user:
            try:
                found = self.user.lookup(key)
            except (MapRetry, MapError) as exc:
                found = None
                self._warn_once(f"bounce_class_maps: {exc}; using the built-in classes")
            if found is not None:
                name = found.strip().lower()
                if name in CLASSES:
                    return name
                self._warn_once(f"bounce_class_maps: {found!r} is not a bounce class; ignored")
        return (self.builtin.lookup(key) or UNCLASSIFIED).strip()

    def of_status(self, st: RecipientStatus) -> str:
        """The class of a failed or delayed recipient; "" for any other outcome."""
        if st.action not in (ACTION_FAILED, ACTION_DELAYED):
            return ""
        return self.classify(st.dsn, st.diag_text or st.reason)

    def _warn_once(self, text: str) -> None:
        if text not in self.warned:
            self.warned.add(text)
            log.warning("%s", text)


_by_config: dict[int, tuple] = {}  # id(cfg) -> (cfg, classifier); cfg held: ids stay unique


def classifier_for(cfg) -> Classifier:
    """The classifier of a configuration, built once (tables opened once)."""
    found = _by_config.get(id(cfg))
    if found is None:
        user = Maps.from_param(cfg, "bounce_class_maps") if cfg.get("bounce_class_maps") else None
        found = _by_config[id(cfg)] = (cfg, Classifier(user))
    return found[1]
