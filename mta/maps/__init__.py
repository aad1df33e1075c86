"""mta.maps - Postfix-style lookup tables: "type:name", one module per type

SYNOPSIS
    from mta.maps import open_map, Maps, Dict, MapError, MapRetry
    open_map("lmdb:/etc/mta/virtual", cfg).lookup("user@example.com")
    Maps.from_param(cfg, "virtual_alias_maps").lookup("user@example.com")

DESCRIPTION
    maps.py holds the interface (Dict), open_map(), Maps and the errors;
    dict_lmdb.py (the default indexed type, built by "mta map"; it also
    serves Postfix's hash: and btree: names from the same FILE.lmdb),
    dict_texthash.py, dict_inline.py (inline, static, fail),
    dict_regexp.py (regexp, pcre), dict_cidr.py and dict_proxy.py
    implement the types; text.py reads table sources.

SECURITY
    See each module; tables are the administrator's, keys may be
    untrusted.

SEE ALSO
    DATABASE_README, postmap(1), mta/cli/map.py
"""

from mta.maps.maps import (
    Dict,
    MapError,
    MapRetry,
    Maps,
    clear_cache,
    note_once,
    open_map,
    register,
    set_note_handler,
    set_warning_handler,
    split_spec,
    table_types,
)

__all__ = [
    "Dict",
    "MapError",
    "MapRetry",
    "Maps",
    "clear_cache",
    "note_once",
    "open_map",
    "register",
    "set_note_handler",
    "set_warning_handler",
    "split_spec",
    "table_types",
]
