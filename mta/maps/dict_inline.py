"""maps.dict_inline - inline:{...}, static: and fail: tables, held in the name itself

SYNOPSIS
    open_map("inline:{ a@example.com=b@example.net, { c = two words } }")
    open_map("static:smtp:[relay.example.com]")     # every key -> that value
    open_map("static:{ value with spaces }")
    open_map("fail:why")                             # every lookup: MapRetry

DESCRIPTION
    inline: the items between the outer braces, separated by commas or
    whitespace, are "key=value"; an item in its own braces may hold
    spaces, and whitespace around its "=" is dropped. Keys fold to lower
    case like every fixed-string table. items() lists them in order.

    static: the name (without surrounding braces) is the answer to every
    lookup. fail: every lookup fails temporarily, for testing how callers
    defer.

    These are the in-memory tables beside dict_lmdb.py: tests use them to
    exercise table consumers without touching the disk.

SECURITY
    The text comes from main.cf or master.cf; trusted.
"""

from __future__ import annotations

from collections.abc import Iterator

from mta.maps.dict_lmdb import fold_key
from mta.maps.maps import Dict, MapError, MapRetry, register
from mta.maps.text import split_braced


class InlineDict(Dict):
    kind = "inline"
    fixed = True

    def __init__(self, spec: str, name: str, cfg=None, fold: bool = True) -> None:
        super().__init__(spec, name, fold)
        text = name.strip()
        if not (text.startswith("{") and text.endswith("}")):
            raise MapError(f"{spec}: need {{ key=value ... }}")
        table: dict[str, str] = {}
        for item in split_braced(text, spec):
            key, eq, value = item.partition("=")
            key, value = key.strip(), value.strip()
            if not eq or not key:
                raise MapError(f'{spec}: expected "key=value", got "{item}"')
            if fold:
                key = fold_key(key)
            table.setdefault(key, value)
        self.table = table

    def lookup(self, key: str) -> str | None:
        return self.table.get(fold_key(key) if self.fold else key)

    def items(self) -> Iterator[tuple[str, str]]:
        return iter(list(self.table.items()))


class StaticDict(Dict):
    kind = "static"
    fixed = True

    def __init__(self, spec: str, name: str, cfg=None, fold: bool = True) -> None:
        super().__init__(spec, name, fold)
        text = name.strip()
        if text.startswith("{"):
            if not text.endswith("}"):
                raise MapError(f"{spec}: missing '}}'")
            text = text[1:-1].strip()
        self.value = text

    def lookup(self, key: str) -> str | None:
        return self.value


class FailDict(Dict):
    kind = "fail"
    fixed = True

    def lookup(self, key: str) -> str | None:
        raise MapRetry(f"{self.spec}: table lookup failed")

    def __init__(self, spec: str, name: str, cfg=None, fold: bool = True) -> None:
        super().__init__(spec, name, fold)


register("inline", InlineDict)
register("static", StaticDict)
register("fail", FailDict)
