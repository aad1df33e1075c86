"""config.config - the effective configuration of one mta instance

SYNOPSIS
    from mta.config import load_config
    cfg = load_config("/etc/mta")            # or None: the usual search
    cfg.get("myhostname"); cfg.get_time("smtpd_timeout")
    svc_cfg = cfg.with_overrides({"smtpd_timeout": "60s"}, where=("master.cf", 12))

DESCRIPTION
    A parameter's value is, in order: a master.cf "-o" override, the
    main.cf setting, the table default (or its host-derived value), then
    every $name in it is expanded. Typed getters convert and report a bad
    value as "FILE, line N: parameter NAME: reason", naming the place the
    raw value came from (the table default is named as such).

    validate() raises for the first bad value among the parameters main.cf
    and the overrides set; mta.config.validate finds every problem of the
    configuration (tables, address lists, typos) for "mta check".

SECURITY
    Reads the administrator's files only.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from mta.config import values
from mta.config.derive import derive_default
from mta.config.errors import ConfigError
from mta.config.expand import expand, expand_param
from mta.config.main_cf import Entry, read_main_cf
from mta.config.params import PARAMS, Param, per_transport_default


class Config:
    """Effective parameters of one instance, with master.cf overrides."""

    def __init__(
        self,
        config_dir: str,
        entries: dict[str, Entry] | None = None,
        overrides: dict[str, tuple[str, str, int]] | None = None,
        *,
        master_cf: str | None = None,
    ) -> None:
        self.config_dir = os.path.abspath(config_dir)
        self.main_cf = os.path.join(self.config_dir, "main.cf")
        # master.cf is read from elsewhere when a service runs on the master's snapshot
        self.master_cf = master_cf or os.path.join(self.config_dir, "master.cf")
        self.entries: dict[str, Entry] = (
            entries if entries is not None else read_main_cf(self.main_cf)
        )
        # name -> (value, path, line) of master.cf -o overrides
        self.overrides: dict[str, tuple[str, str, int]] = dict(overrides or {})
        self._derived: dict[str, str] = {}
        self._cache: dict[str, str] = {}

    # ---- raw values
    def param(self, name: str) -> Param | None:
        """Return the table entry for name (also TRANSPORT_* names), or None."""
        return PARAMS.get(name) or per_transport_default(name)

    def default(self, name: str) -> str | None:
        """Return the unexpanded default of name, computing derived ones."""
        if name == "config_directory":
            return self.config_dir
        p = self.param(name)
        if p is None:
            return None
        if p.derived:
            if name not in self._derived:
                self._derived[name] = derive_default(name, self.get)
            return self._derived[name]
        return p.default

    def raw(self, name: str) -> str | None:
        """Return the unexpanded effective value of name, or None when unknown."""
        if name in self.overrides:
            return self.overrides[name][0]
        if name in self.entries:
            return self.entries[name].value
        return self.default(name)

    def source(self, name: str) -> tuple[str | None, int | None]:
        """Return (path, line) where name's effective raw value was set."""
        if name in self.overrides:
            _, path, line = self.overrides[name]
            return path, line
        if name in self.entries:
            e = self.entries[name]
            return e.path, e.line
        return None, None

    def is_set(self, name: str) -> bool:
        return name in self.entries or name in self.overrides

    # ---- expanded values
    def get(self, name: str) -> str:
        """Return the expanded value of name ("" when unknown)."""
        try:
            return self._cache[name]
        except KeyError:
            pass
        try:
            value = expand_param(name, self.raw)
        except ConfigError as exc:
            path, line = self.source(name)
            raise ConfigError(exc.message, path=path, line=line, param=name) from None
        self._cache[name] = value
        return value

    def expand(self, text: str) -> str:
        """Expand $names in arbitrary text against this configuration."""
        return expand(text, self.raw)

    def _convert(self, name: str, fn, *args):
        text = self.get(name)
        try:
            return fn(text, *args)
        except ValueError as exc:
            path, line = self.source(name)
            if path is None:
                path = "default value"
            raise ConfigError(str(exc), path=path, line=line, param=name) from None

    def get_bool(self, name: str) -> bool:
        return self._convert(name, values.parse_bool)

    def get_int(self, name: str) -> int:
        p = self.param(name)
        return self._convert(name, values.parse_int, p and p.min, p and p.max)

    def get_time(self, name: str) -> int:
        p = self.param(name)
        return self._convert(name, values.parse_time, p.unit if p else "s")

    def get_size(self, name: str) -> int:
        return self._convert(name, values.parse_size)

    def get_list(self, name: str) -> list[str]:
        return self._convert(name, values.split_list)

    def get_typed(self, name: str):
        """Return name's value converted according to its kind in the table."""
        p = self.param(name)
        kind = p.kind if p else "str"
        if kind == "bool":
            return self.get_bool(name)
        if kind == "int":
            return self.get_int(name)
        if kind == "time":
            return self.get_time(name)
        if kind == "size":
            return self.get_size(name)
        if kind in ("list", "maps"):
            return self.get_list(name)
        return self.get(name)

    # ---- whole-configuration operations
    def with_overrides(
        self, overrides: dict[str, str], where: tuple[str, int] | None = None
    ) -> Config:
        """Return a Config where overrides (from master.cf -o) take precedence."""
        path, line = where or (self.master_cf, 0)
        merged = dict(self.overrides)
        for k, v in overrides.items():
            merged[k] = (v, path, line)
        return Config(self.config_dir, self.entries, merged, master_cf=self.master_cf)

    def known_names(self) -> Iterable[str]:
        return PARAMS.keys()

    def unknown_settings(self, transports: set[str] | None = None) -> list[Entry]:
        """main.cf settings that name no known parameter (postconf: unused)."""
        out = []
        for name, e in self.entries.items():
            if name in PARAMS or per_transport_default(name, transports):
                continue
            out.append(e)
        return out

    def validate(self) -> None:
        """Raise ConfigError for the first bad value or loop among set parameters."""
        for name in list(self.entries) + list(self.overrides):
            p = self.param(name)
            self.get(name)
            if p is not None and p.kind != "str":
                self.get_typed(name)


def default_instance_dir() -> str:
    """Where the embedded default instance lives (see mta.config.instance)."""
    from mta.config.instance import instance_dir

    return instance_dir()


def resolve_config_dir(cli_dir: str | None) -> str:
    """-c wins, then MTA_CONFIG_DIR, then the embedded default instance."""
    if cli_dir:
        return os.path.abspath(cli_dir)
    env = os.environ.get("MTA_CONFIG_DIR")
    if env:
        return os.path.abspath(env)
    from mta.config.instance import ensure_instance

    return ensure_instance()


def load_config(config_dir: str | None = None) -> Config:
    """Load main.cf from config_dir (resolved as resolve_config_dir does)."""
    directory = resolve_config_dir(config_dir)
    if not os.path.isdir(directory):
        raise ConfigError("no such configuration directory", path=directory)
    return Config(directory)
