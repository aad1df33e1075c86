"""postscreen.access - postscreen_access_list: the permanent allow and deny list

SYNOPSIS
    from mta.postscreen.access import AccessList, PSC_ACL_PERMIT
    acl = AccessList(cfg)                 # ConfigError names the parameter
    verdict = acl.check("192.0.2.1")      # PSC_ACL_PERMIT, PSC_ACL_REJECT or PSC_ACL_DUNNO

DESCRIPTION
    The list is searched in order; the first decisive entry wins:

        permit_mynetworks   permit a client in mynetworks
        permit, reject      permit or reject every client
        dunno               stop the search, no decision
        type:table          look the client address up; the result is
                            permit, reject or dunno (other words are
                            logged and count as dunno)

    A table that fails is logged and the search goes on, so a broken
    table never permits a client.

SECURITY
    The key is the client address from the kernel.
"""

from __future__ import annotations

from mta import log
from mta.common.match_list import AddrList
from mta.config import ConfigError
from mta.maps import MapError, MapRetry, open_map

PSC_ACL_PERMIT = "permit"
PSC_ACL_REJECT = "reject"
PSC_ACL_DUNNO = "dunno"
PSC_ACL_WORDS = (PSC_ACL_PERMIT, PSC_ACL_REJECT, PSC_ACL_DUNNO)


class AccessList:
    def __init__(self, cfg, param: str = "postscreen_access_list") -> None:
        self.param = param
        self.entries: list[tuple[str, object]] = []
        try:
            for item in cfg.get_list(param):
                low = item.lower()
                if low == "permit_mynetworks":
                    self.entries.append(("mynetworks", AddrList.from_param(cfg, "mynetworks")))
                elif low in PSC_ACL_WORDS:
                    self.entries.append(("word", low))
                elif ":" in item:
                    self.entries.append(("table", open_map(item, cfg)))
                else:
                    raise ConfigError(f"{param}: unknown element {item}")
        except MapError as exc:
            raise ConfigError(f"{param}: {exc}") from None

    def check(self, addr: str) -> str:
        for kind, what in self.entries:
            if kind == "mynetworks":
                if what.match(addr):
                    return PSC_ACL_PERMIT
            elif kind == "word":
                return what
            else:
                try:
                    found = what.lookup(addr)
                except (MapError, MapRetry) as exc:
                    log.warning("%s: %s: table lookup problem: %s", self.param, what.spec, exc)
                    continue
                if found is None:
                    continue
                word = (found.split() or [""])[0].lower()
                if word in PSC_ACL_WORDS:
                    return word
                log.warning(
                    "%s: %s: unknown result %s for %s", self.param, what.spec, found[:100], addr
                )
        return PSC_ACL_DUNNO
