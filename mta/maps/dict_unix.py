"""maps.dict_unix - unix:passwd.byname and unix:group.byname, the system's users and groups

SYNOPSIS
    open_map("unix:passwd.byname").lookup("root")   # "root:x:0:0:root:/root:/bin/bash"
    open_map("unix:group.byname").lookup("adm")     # "adm:x:4:syslog,alice"

DESCRIPTION
    Read-only tables over the system's password and group databases
    (through pwd and grp, so NSS sources count). The value is the entry
    in the colon-separated form of passwd(5) and group(5): for
    passwd.byname "name:password:uid:gid:gecos:home:shell", for
    group.byname "name:password:gid:member,member...".

    Keys fold to lower case unless the table is opened with fold=False,
    like every fixed-string table; the table is then searched with the
    folded key, so a user whose name has capitals is found only without
    folding. An empty key finds nothing. The tables cannot be listed.

    The default local_recipient_maps, "proxy:unix:passwd.byname
    $alias_maps", reaches this table through proxymap.

SECURITY
    Reads the system's user and group databases, which every process may
    read. Keys may be untrusted local parts: they are only used as names
    to look up.

SEE ALSO
    postconf(5) local_recipient_maps, DATABASE_README ("unix" type)
"""

from __future__ import annotations

import grp
import pwd

from mta.maps.dict_lmdb import fold_key
from mta.maps.maps import Dict, MapError, register

UNIX_PASSWD_BYNAME = "passwd.byname"  # users by name
UNIX_GROUP_BYNAME = "group.byname"  # groups by name


def _passwd_entry(key: str) -> str | None:
    try:
        pw = pwd.getpwnam(key)
    except (KeyError, ValueError):
        return None
    return ":".join(
        (
            pw.pw_name,
            pw.pw_passwd,
            str(pw.pw_uid),
            str(pw.pw_gid),
            pw.pw_gecos,
            pw.pw_dir,
            pw.pw_shell,
        )
    )


def _group_entry(key: str) -> str | None:
    try:
        gr = grp.getgrnam(key)
    except (KeyError, ValueError):
        return None
    return ":".join((gr.gr_name, gr.gr_passwd, str(gr.gr_gid), ",".join(gr.gr_mem)))


_UNIX_TABLES = {
    UNIX_PASSWD_BYNAME: _passwd_entry,
    UNIX_GROUP_BYNAME: _group_entry,
}


class UnixDict(Dict):
    kind = "unix"
    fixed = True

    def __init__(self, spec: str, name: str, cfg=None, fold: bool = True) -> None:
        super().__init__(spec, name, fold)
        getter = _UNIX_TABLES.get(name)
        if getter is None:
            known = ", ".join(sorted(_UNIX_TABLES))
            raise MapError(f"{spec}: unknown table: {name} (known: {known})")
        self._get = getter

    def lookup(self, key: str) -> str | None:
        if not key or "\0" in key:
            return None
        return self._get(fold_key(key) if self.fold else key)


register("unix", UnixDict)
