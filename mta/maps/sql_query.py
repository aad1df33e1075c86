"""maps.sql_query - the query and result templates of Postfix's SQL tables (sqlite:, pgsql:)

SYNOPSIS
    from mta.maps.sql_query import SqlSettings, expand_query, format_results
    settings = SqlSettings.read("/etc/mta/sqlite-aliases.cf")   # MapError "FILE, line N: ..."
    sql = expand_query(settings.query, key, quote)    # None: suppressed (no lookup, not found)
    value = format_results(settings, key, rows)      # None: not found

DESCRIPTION
    The configuration file holds "name = value" lines (comments and
    continuation lines as in main.cf): dbpath (sqlite), hosts, user,
    password, dbname (pgsql), query, result_format (%s), domain,
    expansion_limit (0: none), and the pre-2.2 select_field, table,
    where_field, additional_conditions that make a query when none is
    given.

    query expansions: %% a "%"; %s the key; %u the local part of
    user@domain (else the key; an empty local part suppresses the
    query); %d the domain (no domain: suppressed); %S %U %D the same;
    %1..%9 the domain's labels from the right (too few: suppressed).
    Every expansion is quoted by the caller's quote() (SQL string
    quoting), so a key cannot add SQL.

    result_format is applied to each result value: %s the value, %u and
    %d its local part and domain (a value without them is skipped), %S
    %U %D %1..%9 the key's parts. The formatted values are joined with
    commas; more than expansion_limit of them is a MapRetry ("too many
    results"), as Postfix defers.

    domain, when set, is a list of domains (or type:table lookups by
    domain): only user@domain keys with a non-empty local part and a
    listed domain are looked up.

SECURITY
    Keys are untrusted: they reach the SQL text only through quote().
    The configuration file is the administrator's.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from mta.maps.maps import MapError, MapRetry
from mta.maps.text import decode, logical_lines, read_source

KNOWN = {
    "dbpath",
    "hosts",
    "user",
    "password",
    "dbname",
    "query",
    "result_format",
    "domain",
    "expansion_limit",
    "select_field",
    "table",
    "where_field",
    "additional_conditions",
}
_EXPANSION = re.compile(r"%(.)", re.S)


def read_config_file(path: str, known) -> dict[str, str]:
    """The "name = value" lines of a table's configuration file (sql, memcache ...);
    MapError naming the file and line for a malformed line or a name not in known."""
    values: dict[str, str] = {}
    for line, text in logical_lines(decode(read_source(path))):
        name, eq, value = text.partition("=")
        name = name.strip()
        if not eq or not name:
            raise MapError(f'{path}, line {line}: expected "name = value"')
        if name not in known:
            raise MapError(f"{path}, line {line}: unknown parameter {name!r}")
        values[name] = value.strip()
    return values


@dataclass
class SqlSettings:
    path: str
    values: dict[str, str] = field(default_factory=dict)
    domains: list[str] = field(default_factory=list)

    @classmethod
    def read(cls, path: str) -> SqlSettings:
        values = read_config_file(path, KNOWN)
        out = cls(path, values)
        if not out.query:
            raise MapError(f"{path}: no query (or select_field, table, where_field)")
        limit = values.get("expansion_limit", "0")
        if not limit.isdigit():
            raise MapError(f"{path}: expansion_limit must be a number, not {limit!r}")
        out.domains = [d.lower() for d in re.split(r"[\s,]+", values.get("domain", "")) if d]
        for name in ("query", "result_format"):
            try:
                expand_query(
                    out.values.get(name, "%s") if name != "query" else out.query,
                    "u@a.b.c.d.e.f.g.h.i",
                    lambda s: s,
                )
            except ValueError as exc:
                raise MapError(f"{path}: {name}: {exc}") from None
        return out

    @property
    def query(self) -> str:
        q = self.values.get("query", "")
        if q:
            return q
        v = self.values
        if v.get("select_field") and v.get("table") and v.get("where_field"):
            extra = v.get("additional_conditions", "")
            return (
                f"SELECT {v['select_field']} FROM {v['table']} WHERE {v['where_field']} = '%s' "
                f"{extra}"
            ).strip()
        return ""

    @property
    def result_format(self) -> str:
        return self.values.get("result_format", "%s")

    @property
    def expansion_limit(self) -> int:
        return int(self.values.get("expansion_limit", "0"))

    def eligible(self, key: str, domain_lookup: Callable[[str], bool] | None = None) -> bool:
        """The domain restriction: True when key may be looked up."""
        if not self.domains:
            return True
        local, at, domain = key.rpartition("@")
        if not at or not local or not domain:
            return False
        domain = domain.lower()
        if domain in self.domains:
            return True
        return bool(domain_lookup and domain_lookup(domain))


def _parts(text: str) -> tuple[str | None, str | None, list[str]]:
    local, at, domain = text.rpartition("@")
    if not at:
        return text, None, []
    return local, domain, domain.split(".")[::-1] if domain else []


def expand_query(template: str, key: str, quote: Callable[[str], str], value: str | None = None):
    """template with its % expansions, each through quote; None when suppressed.

    value: a result value (result_format); then %s %u %d expand it, and
    the upper-case and digit forms the key. ValueError for an unknown
    expansion."""
    k_local, k_domain, k_labels = _parts(key)
    if value is not None:
        v_local, v_domain, _ = _parts(value)
        lower = {"s": value, "u": v_local if v_domain is not None else None, "d": v_domain}
    else:
        lower = {
            "s": key,
            "u": (k_local or None) if k_domain is not None else key,
            "d": k_domain,
        }
    upper = {"S": key, "U": (k_local or None) if k_domain is not None else key, "D": k_domain}
    suppressed = False

    def repl(m: re.Match) -> str:
        nonlocal suppressed
        c = m.group(1)
        if c == "%":
            return "%"
        if c in lower:
            text = lower[c]
        elif c in upper:
            text = upper[c]
        elif c.isdigit() and c != "0":
            n = int(c)
            text = k_labels[n - 1] if len(k_labels) >= n else None
        else:
            raise ValueError(f"unknown expansion %{c}")
        if text is None or (c in "uU" and text == ""):
            suppressed = True
            return ""
        return quote(text)

    out = _EXPANSION.sub(repl, template)
    if template.endswith("%") and not template.endswith("%%"):
        raise ValueError("a lone % at the end")
    return None if suppressed else out


def format_results(settings: SqlSettings, key: str, rows: Iterable[str]) -> str | None:
    """The table's answer from the query's result values; None when not found."""
    out = []
    for value in rows:
        if value is None or value == "":
            continue
        formatted = expand_query(settings.result_format, key, lambda s: s, str(value))
        if formatted is None:
            continue
        out.append(formatted)
        if settings.expansion_limit and len(out) > settings.expansion_limit:
            raise MapRetry(f"{settings.path}: too many results for {key!r}")
    return ",".join(out) if out else None
