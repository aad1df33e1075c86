"""maps.dict_compose - unionmap:, pipemap:, randmap: and environ: tables

SYNOPSIS
    open_map("unionmap:{ texthash:/etc/mta/a, inline:{x=1} }")   # every answer, joined
    open_map("pipemap:{ texthash:/etc/mta/a, texthash:/etc/mta/b }")   # a's answer asked of b
    open_map("randmap:{ smtp:[relay1.example], smtp:[relay2.example] }")  # one at random
    open_map("environ:table")                    # the environment variable named by the key

DESCRIPTION
    As Postfix's tables of the same names:

    unionmap:{table, ...} asks every table with the key and answers
    with the answers found, in order, joined by commas; not found when
    none has one.

    pipemap:{table, ...} asks the first table with the key, the second
    with the first's answer, and so on; the last answer is the result,
    not found as soon as one table has none. A value with several
    comma-separated results is passed on whole, as Postfix does.

    randmap:{value, ...} answers every key with one of its values,
    chosen at random each time (a value in its own braces may hold
    spaces and commas).

    environ: looks the key up as the name of an environment variable of
    the process (the table's name is not used).

    A component table that fails (MapRetry) makes the whole lookup fail;
    a component that cannot be opened is a MapError naming it.

SECURITY
    The specifications come from main.cf; keys may be untrusted and are
    only passed to the component tables (environ: reveals the process's
    environment to whoever can choose keys: use it for configuration).
"""

from __future__ import annotations

import os
import random

from mta.maps.maps import Dict, MapError, open_map, register


def _components(spec: str, name: str) -> list[str]:
    """The items of "{ a, b:{c d}, {e f} }": separated by commas or blanks outside
    braces; an item wholly in braces loses them (it may hold blanks)."""
    text = name.strip()
    if not (text.startswith("{") and text.endswith("}")):
        raise MapError(f"{spec}: need {{ type:name, ... }}")
    items, current, depth = [], [], 0
    for c in text[1:-1]:
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth < 0:
                raise MapError(f"{spec}: unbalanced '}}'")
        if depth == 0 and (c == "," or c.isspace()):
            items.append("".join(current))
            current = []
        else:
            current.append(c)
    if depth:
        raise MapError(f"{spec}: missing '}}'")
    items.append("".join(current))
    out = []
    for item in (i.strip() for i in items):
        if item.startswith("{") and item.endswith("}"):
            item = item[1:-1].strip()
        if item:
            out.append(item)
    if not out:
        raise MapError(f"{spec}: no tables given")
    return out


class _ComposedDict(Dict):
    """A table made of the tables its name lists; fixed only when they all are."""

    def __init__(self, spec: str, name: str, cfg=None, fold: bool = True) -> None:
        super().__init__(spec, name, fold)
        self.tables = [open_map(item, cfg, fold=fold) for item in _components(spec, name)]
        self.fixed = all(t.fixed for t in self.tables)


class UnionDict(_ComposedDict):
    kind = "unionmap"

    def lookup(self, key: str) -> str | None:
        found = [v for v in (t.lookup(key) for t in self.tables) if v is not None]
        return ",".join(found) if found else None


class PipeDict(_ComposedDict):
    kind = "pipemap"

    def lookup(self, key: str) -> str | None:
        value: str | None = key
        for table in self.tables:
            value = table.lookup(value)
            if value is None:
                return None
        return value


class RandDict(Dict):
    kind = "randmap"
    fixed = True

    def __init__(self, spec: str, name: str, cfg=None, fold: bool = True) -> None:
        super().__init__(spec, name, fold)
        self.values = _components(spec, name)

    def lookup(self, key: str) -> str | None:
        return random.choice(self.values)


class EnvironDict(Dict):
    kind = "environ"
    fixed = True

    def __init__(self, spec: str, name: str, cfg=None, fold: bool = True) -> None:
        super().__init__(spec, name, fold=False)  # variable names keep their case

    def lookup(self, key: str) -> str | None:
        return os.environ.get(key)


register("unionmap", UnionDict)
register("pipemap", PipeDict)
register("randmap", RandDict)
register("environ", EnvironDict)
