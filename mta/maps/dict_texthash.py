"""maps.dict_texthash - texthash: tables, the source text read into memory at open

SYNOPSIS
    table = open_map("texthash:/etc/mta/transport", cfg)
    table.lookup("example.com")

DESCRIPTION
    The file is parsed with the same rules as "mta map" input (see
    mta/maps/text.py) when the table is opened; nothing is built on
    disk. The first of duplicate keys wins. Syntax problems are logged
    as warnings "FILE, line N: ..." and the line is skipped, as Postfix
    does. The table is not re-read while the process lives.

SECURITY
    Reads a file the administrator named; the data is trusted.
"""

from __future__ import annotations

from collections.abc import Iterator

from mta.maps.dict_lmdb import fold_key
from mta.maps.maps import Dict, register, warn
from mta.maps.text import read_pairs


class TexthashDict(Dict):
    kind = "texthash"
    fixed = True

    def __init__(self, spec: str, name: str, cfg=None, fold: bool = True) -> None:
        super().__init__(spec, name, fold)
        pairs, warnings = read_pairs(name, fold)
        for line, msg in warnings:
            warn(f"{name}, line {line}: {msg}")
        table: dict[str, str] = {}
        for key, value in pairs:
            if key in table:
                warn(f'{name}: duplicate entry: "{key}"')
                continue
            table[key] = value
        self.table = table

    def lookup(self, key: str) -> str | None:
        return self.table.get(fold_key(key) if self.fold else key)

    def items(self) -> Iterator[tuple[str, str]]:
        return iter(list(self.table.items()))


register("texthash", TexthashDict)
