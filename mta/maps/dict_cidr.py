"""maps.dict_cidr - cidr: tables, network/prefix rules matched in order

SYNOPSIS
    table = open_map("cidr:/etc/mta/client.cidr", cfg)
    table.lookup("192.0.2.7")          # first rule whose network holds it

DESCRIPTION
    The format of Postfix's cidr_table(5):

        network/prefix  result      first matching rule wins
        address         result      exact address (a /32 or /128)
        !network/prefix result      rule applies when the key is outside
        if network/prefix           rules up to endif apply inside it
        if !network/prefix          ... or outside it
        endif

    IPv4 and IPv6; a pattern may be written in brackets ("[::1]/128",
    "[2001:db8::1]"). The lookup key is a bare address: anything else
    (a host name, a bracketed address) matches no rule, not even a
    negated one. Rules are also accepted inline: "cidr:{ {10.0.0.0/8 OK} }".

    As in Postfix, a rule with host bits set below its prefix, a bad
    prefix length, or a pattern that is no address is skipped with a
    warning naming file and line; so is an endif without if.

SECURITY
    Keys are client addresses, untrusted; they are only parsed by
    ipaddress and compared.
"""

from __future__ import annotations

import ipaddress

from mta.maps.maps import Dict, register, warn
from mta.maps.text import read_rules, split_braced

_Net = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_cidr_pattern(text: str) -> _Net:
    """Parse "addr", "addr/len", "[addr]" or "[addr]/len"; raise ValueError with the reason."""
    addr, slash, plen = text.partition("/")
    if addr.startswith("[") and addr.endswith("]"):
        addr = addr[1:-1]
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        raise ValueError(f'bad address pattern: "{text}"') from None
    if not slash:
        return ipaddress.ip_network(ip)
    if not plen.isdigit() or int(plen) > ip.max_prefixlen:
        raise ValueError(f'bad mask length in "{text}"')
    try:
        return ipaddress.ip_network(f"{ip}/{int(plen)}", strict=True)
    except ValueError:
        net = ipaddress.ip_network(f"{ip}/{int(plen)}", strict=False)
        raise ValueError(
            f'non-null host address bits in "{text}", perhaps you should use "{net}" instead'
        ) from None


class _Rule:
    __slots__ = ("kind", "version", "base", "mask", "negate", "result", "end", "line")

    def __init__(self, kind, net, negate, result, line) -> None:
        self.kind = kind
        # compared as integers: much cheaper than ipaddress containment per lookup
        self.version = net.version if net is not None else 0
        self.base = int(net.network_address) if net is not None else 0
        self.mask = int(net.netmask) if net is not None else 0
        self.negate = negate
        self.result = result
        self.end = 0
        self.line = line

    def matches(self, version: int, value: int) -> bool:
        inside = version == self.version and (value & self.mask) == self.base
        return inside != self.negate


class CidrDict(Dict):
    kind = "cidr"
    fixed = False

    def __init__(self, spec: str, name: str, cfg=None, fold: bool = True) -> None:
        super().__init__(spec, name, fold)
        text = name.strip()
        if text.startswith("{"):
            where = spec
            lines = [(i, t) for i, t in enumerate(split_braced(text, spec), 1) if t]
        else:
            where = name
            lines = read_rules(name)
        self.rules = self._compile(where, lines)

    def _compile(self, where: str, lines: list[tuple[int, str]]) -> list[_Rule]:
        rules: list[_Rule] = []
        stack: list[int] = []
        for line, text in lines:
            words = text.split(None, 1)
            head = words[0].lower()
            if head == "endif":
                if len(words) > 1:
                    warn(f"{where}, line {line}: ignoring extra text after ENDIF")
                if not stack:
                    warn(f"{where}, line {line}: ignoring ENDIF without matching IF")
                    continue
                rules[stack.pop()].end = len(rules) + 1
                rules.append(_Rule("endif", None, False, None, line))
                continue
            kind = "match"
            if head == "if" and len(words) > 1:
                kind = "if"
                words = words[1].split(None, 1)
            pattern = words[0]
            rest = words[1].strip() if len(words) > 1 else ""
            negate = pattern.startswith("!")
            if negate:
                pattern = pattern[1:]
            try:
                net = parse_cidr_pattern(pattern)
            except ValueError as exc:
                warn(f"{where}, line {line}: {exc}: skipping this rule")
                continue
            if kind == "if":
                if rest:
                    warn(f'{where}, line {line}: ignoring extra text after IF statement: "{rest}"')
                stack.append(len(rules))
                rules.append(_Rule("if", net, negate, None, line))
                continue
            if not rest:
                warn(f'{where}, line {line}: no lookup result for "{pattern}": skipping this rule')
                continue
            rules.append(_Rule("match", net, negate, rest, line))
        for index in stack:
            warn(f"{where}, line {rules[index].line}: IF has no matching ENDIF")
            rules[index].end = len(rules)
        return rules

    def lookup(self, key: str) -> str | None:
        try:
            ip = ipaddress.ip_address(key)
        except ValueError:
            return None
        version, value = ip.version, int(ip)
        rules = self.rules
        i, n = 0, len(rules)
        while i < n:
            rule = rules[i]
            if rule.kind == "match":
                if rule.matches(version, value):
                    return rule.result
            elif rule.kind == "if" and not rule.matches(version, value):
                i = rule.end
                continue
            i += 1
        return None


register("cidr", CidrDict)
