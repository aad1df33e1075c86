"""local.alias - alias_maps lookups for local delivery, with owner- handling

SYNOPSIS
    from mta.local.alias import AliasTables
    aliases = AliasTables(cfg)
    found = aliases.lookup("postmaster")     # AliasMatch(name, value, owner, table) or None

DESCRIPTION
    Local delivery looks up the bare local part of a recipient, folded
    to lower case, in every table of alias_maps in order; the first
    answer wins. A MapRetry from a table is passed on (the caller
    defers).

    Owner aliases: with owner_request_special (the default), when the
    table that answered also has "owner-NAME", mail forwarded for NAME
    gets the envelope sender "owner-NAME", so that delivery problems go
    to the list owner and not to the original sender; with
    expand_owner_alias the sender is the first destination of the
    owner-NAME alias instead.

    privs_for() tells with whose rights commands and files of an alias
    run: the owner of the table file when that is not root, else
    default_privs.

SECURITY
    Lookup keys are recipient local parts (untrusted); they are only
    looked up.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from mta.local.aliases_file import split_alias_value
from mta.local.privs import Privs, default_privs
from mta.maps import Dict, Maps, split_spec
from mta.maps.dict_lmdb import LMDB_KINDS, LMDB_SUFFIX


@dataclass
class AliasMatch:
    name: str  # the key that matched
    value: str  # the right-hand side
    owner: str | None  # sender for forwarded mail ("owner-NAME"; None: keep the sender)
    table: Dict | None


class AliasTables:
    def __init__(self, cfg) -> None:
        self.cfg = cfg
        self.maps = Maps.from_param(cfg, "alias_maps")
        self.owner_special = cfg.get_bool("owner_request_special")
        self.expand_owner = cfg.get_bool("expand_owner_alias")

    def lookup(self, name: str) -> AliasMatch | None:
        """The alias for name (already folded), or None; MapRetry passes through."""
        name = name.lower()
        for table in self.maps:
            value = table.lookup(name)
            if value is None:
                continue
            owner: str | None = None
            if self.owner_special and not name.startswith("owner-"):
                owner_value = table.lookup(f"owner-{name}")
                if owner_value is not None:
                    owner = f"owner-{name}"
                    if self.expand_owner:
                        items = split_alias_value(owner_value)
                        owner = items[0] if items else owner
            return AliasMatch(name, value, owner, table)
        return None

    def privs_for(self, match: AliasMatch) -> Privs:
        """Rights for commands and files of match: the table's owner unless root."""
        path = _table_file(match.table, self.cfg) if match.table is not None else None
        if path:
            try:
                st = os.stat(path)
            except OSError:
                st = None
            if st is not None and st.st_uid != 0:
                return Privs(st.st_uid, st.st_gid)
        return default_privs(self.cfg)


def _table_file(table: Dict, cfg) -> str | None:
    kind, name = split_spec(table.spec, cfg)
    if kind in LMDB_KINDS:
        return name + LMDB_SUFFIX
    if kind in ("texthash", "regexp", "pcre", "cidr"):
        return name
    return None
