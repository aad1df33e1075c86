"""config.expand - $name expansion in parameter values, as Postfix does it

SYNOPSIS
    from mta.config.expand import expand
    expand("$myhostname, localhost.$mydomain", raw_lookup)

DESCRIPTION
    Forms understood: $name, ${name}, $(name); ${name?text} (text when
    name is set and not empty); ${name:text} (text when name is empty or
    unset); ${name?{text1}:{text2}}; $$ for a literal dollar. The text of
    a conditional is itself expanded. An unknown name expands to nothing.
    A name that reaches itself again while it is being expanded raises
    ConfigError naming the loop ("expansion loop: a -> b -> a").

SECURITY
    Values come from the administrator's files; no code is evaluated.
"""

from __future__ import annotations

from collections.abc import Callable

from mta.config.errors import ConfigError

Lookup = Callable[[str], "str | None"]
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_CLOSE = {"{": "}", "(": ")"}


def _match_brace(s: str, i: int, open_ch: str) -> int:
    """Return the index of the bracket closing s[i-1] == open_ch."""
    close_ch = _CLOSE[open_ch]
    depth = 1
    while i < len(s):
        c = s[i]
        if c == open_ch:
            depth += 1
        elif c == close_ch:
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise ConfigError(f'missing "{close_ch}" in "{s}"')


def _split_alternatives(text: str) -> tuple[str, str | None]:
    """Split "{a}:{b}" into (a, b); any other text is (text, None)."""
    t = text.strip()
    if t.startswith("{"):
        end = _match_brace(t, 1, "{")
        rest = t[end + 1 :].lstrip()
        if rest.startswith(":"):
            rest = rest[1:].lstrip()
            if rest.startswith("{") and rest.endswith("}"):
                return t[1:end], rest[1:-1]
        elif not rest:
            return t[1:end], None
    return text, None


def expand(value: str, lookup: Lookup, _stack: tuple[str, ...] = ()) -> str:
    """Expand every $name in value, fetching raw values through lookup."""
    if "$" not in value:
        return value
    out: list[str] = []
    i, n = 0, len(value)
    while i < n:
        c = value[i]
        if c != "$" or i + 1 >= n:
            out.append(c)
            i += 1
            continue
        nxt = value[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
            continue
        if nxt in _CLOSE:
            end = _match_brace(value, i + 2, nxt)
            body = value[i + 2 : end]
            i = end + 1
            name, op, text = body, "", ""
            for j, ch in enumerate(body):
                if ch in "?:":
                    name, op, text = body[:j].strip(), ch, body[j + 1 :]
                    break
            name = name.strip()
        elif nxt in _NAME_CHARS:
            j = i + 1
            while j < n and value[j] in _NAME_CHARS:
                j += 1
            name, op, text = value[i + 1 : j], "", ""
            i = j
        else:
            out.append(c)
            i += 1
            continue
        if not name or any(ch not in _NAME_CHARS for ch in name):
            raise ConfigError(f'bad macro name "{name}" in "{value}"')
        resolved = _resolve(name, lookup, _stack)
        if op == "":
            out.append(resolved)
        else:
            when_set, when_unset = _split_alternatives(text)
            if op == "?":
                if resolved:
                    out.append(expand(when_set, lookup, _stack))
                elif when_unset is not None:
                    out.append(expand(when_unset, lookup, _stack))
            elif not resolved:  # op == ":"
                out.append(expand(when_set, lookup, _stack))
    return "".join(out)


def _resolve(name: str, lookup: Lookup, stack: tuple[str, ...]) -> str:
    if name in stack:
        loop = " -> ".join(stack[stack.index(name) :] + (name,))
        raise ConfigError(f"expansion loop: {loop}", param=stack[0])
    raw = lookup(name)
    if raw is None:
        return ""
    return expand(raw, lookup, stack + (name,))


def expand_param(name: str, lookup: Lookup) -> str:
    """Return the fully expanded value of parameter name."""
    raw = lookup(name)
    if raw is None:
        return ""
    return expand(raw, lookup, (name,))
