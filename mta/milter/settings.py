"""milter.settings - which milters to use and how: main.cf milter_* and the milter lists

SYNOPSIS
    from mta.milter.settings import MilterSettings, parse_milters, setup_problems
    settings = MilterSettings.from_config(cfg)
    specs = parse_milters(cfg.get("smtpd_milters"), settings)     # [MilterSpec, ...]

DESCRIPTION
    smtpd_milters and non_smtpd_milters are lists (commas or spaces)
    of milter endpoints:

        inet:host:port   inet:[ipv6addr]:port
        unix:/path       local:/path (the same; a relative path is
                         taken below queue_directory, as Postfix)

    or, per milter, the Postfix 3.0 form that overrides main.cf
    settings for that milter only:

        { inet:127.0.0.1:8891, connect_timeout=10s, command_timeout=10s,
          content_timeout=60s, default_action=accept, protocol=6 }

    The main.cf defaults are milter_connect_timeout (30s),
    milter_command_timeout (30s), milter_content_timeout (300s),
    milter_default_action (tempfail; or accept, reject, quarantine)
    and milter_protocol (6; 2, 3 and 4 are accepted and narrow what is
    offered at option negotiation). The macros sent at each stage are
    milter_{connect,helo,mail,rcpt,data,end_of_header,end_of_data,
    unknown_command}_macros; milter_macro_defaults gives "name=value"
    for macros the MTA has no value for; milter_macro_daemon_name and
    milter_macro_v are the {daemon_name} and {v} values.
    milter_header_checks are checked against the headers milters add.

    A spec that does not parse is a ValueError here; setup_problems()
    turns it into a fatal "mta check" problem naming the parameter.

SECURITY
    Reads configuration only.

SEE ALSO
    postconf(5) milter_*, MILTER_README
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace

from mta.config.errors import ConfigError
from mta.config.values import parse_time, split_list

MILTER_LISTS = ("smtpd_milters", "non_smtpd_milters")
DEFAULT_ACTIONS = ("accept", "reject", "tempfail", "quarantine")
PROTOCOL_VERSIONS = (2, 3, 4, 6)
# stage -> the main.cf parameter naming its macros
MACRO_PARAMS = {
    "connect": "milter_connect_macros",
    "helo": "milter_helo_macros",
    "mail": "milter_mail_macros",
    "rcpt": "milter_rcpt_macros",
    "data": "milter_data_macros",
    "eoh": "milter_end_of_header_macros",
    "eod": "milter_end_of_data_macros",
    "unknown": "milter_unknown_command_macros",
}
# per-milter settings of the "{ ... }" form: name -> kind
MILTER_SETTINGS = {
    "connect_timeout": "time",
    "command_timeout": "time",
    "content_timeout": "time",
    "default_action": "action",
    "protocol": "protocol",
}
_PORT_RE = re.compile(r"(?:\d{1,5}|[A-Za-z][A-Za-z0-9-]*)$")


@dataclass(frozen=True)
class MilterSpec:
    """One milter: where it is and its own settings."""

    name: str  # as logged: "inet:127.0.0.1:8891"
    transport: str  # "inet" or "unix"
    address: object  # (host, port) or a path
    connect_timeout: float = 30
    command_timeout: float = 30
    content_timeout: float = 300
    default_action: str = "tempfail"
    protocol: int = 6


@dataclass
class MilterSettings:
    """main.cf values shared by every milter of a process."""

    defaults: MilterSpec
    macros: dict[str, list[str]] = field(default_factory=dict)
    macro_defaults: dict[str, str] = field(default_factory=dict)
    daemon_name: str = ""
    version: str = ""
    queue_directory: str = ""

    @classmethod
    def from_config(cls, cfg) -> MilterSettings:
        """The milter_* parameters; ConfigError naming the one that does not parse."""

        def value(param, parse):
            try:
                return parse(cfg.get(param).strip())
            except ValueError as exc:
                path, line = cfg.source(param)
                raise ConfigError(str(exc), path=path, line=line, param=param) from None

        defaults = MilterSpec(
            name="",
            transport="",
            address=None,
            connect_timeout=value("milter_connect_timeout", parse_time),
            command_timeout=value("milter_command_timeout", parse_time),
            content_timeout=value("milter_content_timeout", parse_time),
            default_action=value("milter_default_action", parse_default_action),
            protocol=value("milter_protocol", parse_protocol),
        )
        macros = {stage: value(param, split_list) for stage, param in MACRO_PARAMS.items()}
        return cls(
            defaults=defaults,
            macros=macros,
            macro_defaults=value("milter_macro_defaults", parse_macro_defaults),
            daemon_name=cfg.get("milter_macro_daemon_name"),
            version=cfg.get("milter_macro_v"),
            queue_directory=cfg.get("queue_directory"),
        )


def parse_default_action(text: str) -> str:
    action = text.strip().lower()
    if action not in DEFAULT_ACTIONS:
        raise ValueError(f'bad milter default action "{text}" (need {", ".join(DEFAULT_ACTIONS)})')
    return action


def parse_protocol(text: str) -> int:
    text = text.strip()
    if not text.isdigit() or int(text) not in PROTOCOL_VERSIONS:
        raise ValueError(f'unsupported milter protocol version "{text}" (need 2, 3, 4 or 6)')
    return int(text)


def parse_macro_defaults(text: str) -> dict[str, str]:
    out = {}
    for item in split_list(text):
        if item.startswith("{") and item.endswith("}") and "=" in item:
            item = item[1:-1].strip()
        name, eq, val = item.partition("=")
        if not eq or not name.strip():
            raise ValueError(f'milter_macro_defaults: need name=value, not "{item}"')
        out[name.strip()] = val.strip()
    return out


def parse_endpoint(text: str, queue_directory: str = "") -> tuple[str, object, str]:
    """(transport, address, name) of inet:host:port, unix:/path or local:/path."""
    kind, colon, rest = text.partition(":")
    kind = kind.lower()
    if colon and kind == "inet":
        host, colon, port = rest.rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if not colon or not host or not _PORT_RE.match(port):
            raise ValueError(f'malformed milter "{text}": need inet:host:port')
        if port.isdigit() and not 0 < int(port) < 65536:
            raise ValueError(f'malformed milter "{text}": bad port {port}')
        return "inet", (host, port), f"inet:{rest}"
    if colon and kind in ("unix", "local"):
        if not rest or "\0" in rest:
            raise ValueError(f'malformed milter "{text}": need unix:/path')
        path = rest if rest.startswith("/") else os.path.join(queue_directory, rest)
        return "unix", path, f"{kind}:{rest}"
    raise ValueError(f'malformed milter "{text}": need inet:host:port or unix:/path')


def parse_milter(text: str, settings: MilterSettings) -> MilterSpec:
    """One list element: an endpoint or "{ endpoint, name=value ... }"."""
    text = text.strip()
    overrides: dict[str, object] = {}
    if text.startswith("{"):
        if not text.endswith("}"):
            raise ValueError(f'milter syntax error: missing "}}" in "{text}"')
        items = split_list(text[1:-1])
        if not items:
            raise ValueError(f'empty milter: "{text}"')
        text = items[0]
        for item in items[1:]:
            name, eq, value = item.partition("=")
            name, value = name.strip(), value.strip()
            if not eq or not name:
                raise ValueError(f'milter {text}: need name=value, not "{item}"')
            kind = MILTER_SETTINGS.get(name)
            if kind is None:
                raise ValueError(f'milter {text}: unknown attribute name "{name}"')
            try:
                if kind == "time":
                    overrides[name] = parse_time(value)
                elif kind == "action":
                    overrides[name] = parse_default_action(value)
                else:
                    overrides[name] = parse_protocol(value)
            except ValueError as exc:
                raise ValueError(f"milter {text}: {name}: {exc}") from None
    transport, address, name = parse_endpoint(text, settings.queue_directory)
    return replace(settings.defaults, name=name, transport=transport, address=address, **overrides)


def parse_milters(text: str, settings: MilterSettings) -> list[MilterSpec]:
    """Every milter of an smtpd_milters-style list; ValueError when one does not parse."""
    return [parse_milter(item, settings) for item in split_list(text)]


def setup_problems(cfg) -> list[tuple[str, str, bool]]:
    """(param, why, fatal) for milter lists and settings that do not parse (mta check)."""
    out = []
    try:
        settings = MilterSettings.from_config(cfg)
    except ConfigError as exc:
        return [(exc.param or "milter_default_action", exc.message, True)]
    for param in MILTER_LISTS:
        try:
            parse_milters(cfg.get(param), settings)
        except ValueError as exc:
            out.append((param, str(exc), True))
    return out
