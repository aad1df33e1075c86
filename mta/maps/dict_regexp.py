"""maps.dict_regexp - regexp: and pcre: tables, rules matched in order with Python re

SYNOPSIS
    table = open_map("regexp:/etc/mta/header_checks", cfg)
    table = open_map("pcre:{ {/^(.*)@old\\.example$/ $1@new.example}, {/x/ OK} }")
    table.lookup("Subject: hello")

DESCRIPTION
    The formats of Postfix's regexp_table(5) and pcre_table(5):

        /pattern/flags result       the first rule whose pattern matches wins
        !/pattern/flags result      ... or whose pattern does not match
        if /pattern/flags           rules up to the matching endif apply only
        if !/pattern/flags          when the pattern matches (does not match)
        endif

    The delimiter may be any character other than a letter, a digit or
    whitespace; a backslash before it keeps it in the pattern. Comments,
    blank lines and continuation lines follow the usual table rules. The
    result may use $1, ${1} or $(1) for the text of a group (empty when
    the group took no part in the match) and $$ for "$".

    Flags toggle: i (case-insensitive, on by default), m (multi-line,
    off), and for pcre s (dot matches newline, on), x (verbose, off), A
    (anchored, off). Keys are matched as given, never case-folded.

    Python's re stands in for POSIX regex and PCRE. What differs and how
    it is bridged:
    - POSIX classes such as [[:alpha:]] inside brackets are rewritten to
      Python ranges;
    - regexp's x flag (POSIX extended syntax, on by default) has no
      Python meaning: basic regular expressions are not offered;
    - regexp patterns get DOTALL, since POSIX "." matches a newline when
      REG_NEWLINE is off, as Postfix compiles them;
    - pcre E, U and X have no Python equivalent: a rule using them is
      skipped with a warning, like a rule with an unknown flag.

    A pattern that does not compile is a MapError "FILE, line N: ..."
    (Postfix skips the rule with a warning; a table with a broken rule
    is refused here instead). Other rule problems are warnings and skip
    the rule as Postfix does: an unknown flag, a $number beyond the
    pattern's groups or in a negated rule's result, an unrecognized
    line; a missing result becomes the empty string; an endif without
    if is ignored and an if without endif is closed at the end.

SECURITY
    Keys may be untrusted text (headers, addresses); the patterns come
    from the administrator. Python's re has no time limit, so a
    pathological pattern can be slow on hostile input, as with PCRE.
"""

from __future__ import annotations

import re

from mta.maps.maps import Dict, MapError, register, warn
from mta.maps.text import read_rules, split_braced

_POSIX_CLASSES = {
    "alnum": "a-zA-Z0-9",
    "alpha": "a-zA-Z",
    "blank": " \\t",
    "cntrl": "\\x00-\\x1f\\x7f",
    "digit": "0-9",
    "graph": "\\x21-\\x7e",
    "lower": "a-z",
    "print": "\\x20-\\x7e",
    "punct": "!-/:-@\\[-`{-~",
    "space": " \\t\\n\\r\\f\\v",
    "upper": "A-Z",
    "xdigit": "0-9A-Fa-f",
    "word": "\\w",
}
_POSIX_RE = re.compile(r"\[:([a-z]+):\]")
_SUBST_RE = re.compile(r"\$(?:(\$)|(\d+)|\{(\d+)\}|\((\d+)\))")

REGEXP_FLAGS = {"i": re.I, "m": re.M, "x": 0}
PCRE_FLAGS = {"i": re.I, "m": re.M, "s": re.S, "x": re.X, "A": 0}
REGEXP_DEFAULT = re.I | re.S
PCRE_DEFAULT = re.I | re.S


def translate_posix_classes(pattern: str) -> str:
    """Rewrite [[:name:]] style classes inside brackets to Python ranges."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\":
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if c != "[":
            out.append(c)
            i += 1
            continue
        # a bracket expression: copy to its closing "]", rewriting classes
        j = i + 1
        if j < n and pattern[j] == "^":
            j += 1
        if j < n and pattern[j] == "]":
            j += 1
        body_start = j
        while j < n and pattern[j] != "]":
            if pattern[j] == "[" and pattern.startswith("[:", j):
                end = pattern.find(":]", j + 2)
                j = end + 2 if end >= 0 else j + 1
                continue
            if pattern[j] == "\\":
                j += 1
            j += 1
        head = pattern[i:body_start]
        body = pattern[body_start:j]

        def repl(m: re.Match) -> str:
            name = m.group(1)
            if name not in _POSIX_CLASSES:
                raise re.error(f"unknown character class [:{name}:]")
            return _POSIX_CLASSES[name]

        out.append(head + _POSIX_RE.sub(repl, body))
        i = j
    return "".join(out)


class _Rule:
    __slots__ = ("kind", "regex", "negate", "result", "anchored", "end", "line", "has_subst")

    def __init__(self, kind, regex, negate, result, anchored, line) -> None:
        self.kind = kind  # "match", "if", "endif"
        self.regex = regex
        self.negate = negate
        self.result = result
        self.anchored = anchored
        self.end = 0  # for "if": index of the rule after the matching endif
        self.line = line
        self.has_subst = bool(result and _SUBST_RE.search(result))

    def matches(self, key: str) -> re.Match | None | bool:
        m = self.regex.match(key) if self.anchored else self.regex.search(key)
        if self.negate:
            return m is None
        return m


def expand_result(result: str, m: re.Match) -> str:
    """Replace $n, ${n}, $(n) by group n of m (empty if unset) and $$ by $."""

    def repl(s: re.Match) -> str:
        if s.group(1):
            return "$"
        n = int(s.group(2) or s.group(3) or s.group(4))
        return m.group(n) or ""

    return _SUBST_RE.sub(repl, result)


class RegexpDict(Dict):
    kind = "regexp"
    fixed = False
    FLAGS = REGEXP_FLAGS
    DEFAULT = REGEXP_DEFAULT

    def __init__(self, spec: str, name: str, cfg=None, fold: bool = True) -> None:
        super().__init__(spec, name, fold)
        text = name.strip()
        if text.startswith("{"):
            where = spec
            lines = [(i, item) for i, item in enumerate(split_braced(text, spec), 1)]
            lines = [(i, t) for i, t in lines if t and not t.startswith("#")]
        else:
            where = name
            lines = read_rules(name)
        self.rules = self._compile(where, lines)

    # ---- parsing
    def _pattern(self, where: str, line: int, text: str):
        """Parse "[!]DpatternDflags"; return (regex, negate, anchored, rest) or None."""
        negate = False
        if text.startswith("!"):
            negate = True
            text = text[1:].lstrip()
        if not text or text[0].isalnum() or text[0].isspace():
            return None
        delim = text[0]
        i, n = 1, len(text)
        while i < n and text[i] != delim:
            if text[i] == "\\" and i + 1 < n:
                i += 1
            i += 1
        if i >= n:
            raise MapError(f'{where}, line {line}: no closing regexp delimiter "{delim}"')
        pattern = text[1:i]
        j = i + 1
        while j < n and not text[j].isspace():
            j += 1
        flag_text, rest = text[i + 1 : j], text[j:].strip()
        flags, anchored = self.DEFAULT, False
        for f in flag_text:
            if f not in self.FLAGS:
                warn(f'{where}, line {line}: unknown regexp option "{f}": skipping this rule')
                return False
            if f == "A":
                anchored = not anchored
            flags ^= self.FLAGS[f]
        try:
            regex = re.compile(translate_posix_classes(pattern), flags)
        except re.error as exc:
            raise MapError(f"{where}, line {line}: bad regular expression: {exc}") from None
        return regex, negate, anchored, rest

    def _compile(self, where: str, lines: list[tuple[int, str]]) -> list[_Rule]:
        rules: list[_Rule] = []
        stack: list[int] = []
        for line, text in lines:
            word = text.split(None, 1)
            head = word[0].lower() if word else ""
            if head == "endif":
                if len(word) > 1:
                    warn(f"{where}, line {line}: ignoring extra text after ENDIF")
                if not stack:
                    warn(f"{where}, line {line}: ignoring ENDIF without matching IF")
                    continue
                rules[stack.pop()].end = len(rules) + 1
                rules.append(_Rule("endif", None, False, None, False, line))
                continue
            kind = "match"
            if head == "if" and len(word) > 1:
                kind, text = "if", word[1]
            parsed = self._pattern(where, line, text)
            if parsed is None:
                warn(f"{where}, line {line}: ignoring unrecognized request")
                continue
            if parsed is False:
                continue
            regex, negate, anchored, rest = parsed
            if kind == "if":
                if rest:
                    warn(f'{where}, line {line}: ignoring extra text after IF statement: "{rest}"')
                stack.append(len(rules))
                rules.append(_Rule("if", regex, negate, None, anchored, line))
                continue
            if not rest:
                warn(f"{where}, line {line}: no replacement text: using empty string")
            rule = _Rule("match", regex, negate, rest, anchored, line)
            if rule.has_subst and not self._check_subst(where, line, rule):
                continue
            rules.append(rule)
        for index in stack:
            warn(f"{where}, line {rules[index].line}: IF has no matching ENDIF")
            rules[index].end = len(rules)
        return rules

    def _check_subst(self, where: str, line: int, rule: _Rule) -> bool:
        for s in _SUBST_RE.finditer(rule.result):
            if s.group(1):
                continue
            if rule.negate:
                warn(
                    f"{where}, line {line}: $number found in negative match "
                    "replacement text: skipping this rule"
                )
                return False
            n = s.group(2) or s.group(3) or s.group(4)
            if int(n) > rule.regex.groups or int(n) == 0:
                warn(
                    f'{where}, line {line}: out of range replacement index "{n}": skipping this rule'
                )
                return False
        return True

    # ---- lookup
    def lookup(self, key: str) -> str | None:
        rules = self.rules
        i, n = 0, len(rules)
        while i < n:
            rule = rules[i]
            if rule.kind == "match":
                m = rule.matches(key)
                if m:
                    if rule.has_subst:
                        return expand_result(rule.result, m)
                    return rule.result.replace("$$", "$") if "$" in rule.result else rule.result
            elif rule.kind == "if":
                if not rule.matches(key):
                    i = rule.end
                    continue
            i += 1
        return None


class PcreDict(RegexpDict):
    kind = "pcre"
    FLAGS = PCRE_FLAGS
    DEFAULT = PCRE_DEFAULT


register("regexp", RegexpDict)
register("pcre", PcreDict)
