"""qmgr.settings - per-transport scheduling settings from main.cf and master.cf

SYNOPSIS
    from mta.qmgr.settings import TransportSettings, load_transports
    table = load_transports(cfg)          # {"smtp": TransportSettings(...), ...}
    table.get("smtp").recipient_limit

DESCRIPTION
    For each service in master.cf, the values qmgr needs when it sends
    mail to that transport: the process limit (master.cf maxproc; 0
    means no limit), and TRANSPORT_destination_concurrency_limit,
    TRANSPORT_initial_destination_concurrency,
    TRANSPORT_destination_recipient_limit, the positive and negative
    feedback, the failed cohort limit and the rate delay, each falling
    back to its default_ form as in Postfix. A transport that master.cf
    does not define gets the defaults; deliveries to it then fail to
    connect and are deferred.

    A recipient limit of 1 makes the concurrency apply per recipient
    rather than per domain, as in Postfix (the local transport).

SECURITY
    Reads the configuration only.
"""

from __future__ import annotations

from dataclasses import dataclass

from mta import log
from mta._speedups.scheduler_ref import parse_feedback
from mta.config import ConfigError
from mta.config.master_cf import read_master_cf


@dataclass(frozen=True)
class TransportSettings:
    name: str
    process_limit: int
    concurrency_limit: int
    initial_concurrency: int
    recipient_limit: int
    positive: tuple[float, float]
    negative: tuple[float, float]
    cohort_limit: float
    rate_delay: float


def _value(cfg, transport: str, suffix: str, default_name: str) -> str:
    try:
        return cfg.get(f"{transport}_{suffix}")
    except (KeyError, ConfigError):
        return cfg.get(default_name)


def settings_for(cfg, transport: str, process_limit: int) -> TransportSettings:
    def num(suffix: str, default_name: str) -> int:
        text = _value(cfg, transport, suffix, default_name).strip()
        try:
            return int(text)
        except ValueError:
            log.warning("%s_%s: bad number %r; using %s", transport, suffix, text, default_name)
            return int(cfg.get(default_name))

    def feedback(suffix: str, default_name: str) -> tuple[float, float]:
        text = _value(cfg, transport, suffix, default_name)
        try:
            return parse_feedback(text)
        except ValueError:
            log.warning("%s_%s: bad feedback %r; using 1", transport, suffix, text)
            return 1.0, 0.0

    def seconds(suffix: str, default_name: str) -> float:
        for name in (f"{transport}_{suffix}", default_name):
            try:
                return float(cfg.get_time(name))
            except (KeyError, ConfigError, ValueError):
                continue
        text = _value(cfg, transport, suffix, default_name)
        log.warning("%s_%s: bad time %r; using 0", transport, suffix, text)
        return 0.0

    return TransportSettings(
        name=transport,
        process_limit=process_limit,
        concurrency_limit=num(
            "destination_concurrency_limit", "default_destination_concurrency_limit"
        ),
        initial_concurrency=num(
            "initial_destination_concurrency", "initial_destination_concurrency"
        ),
        recipient_limit=max(
            1, num("destination_recipient_limit", "default_destination_recipient_limit")
        ),
        positive=feedback(
            "destination_concurrency_positive_feedback",
            "default_destination_concurrency_positive_feedback",
        ),
        negative=feedback(
            "destination_concurrency_negative_feedback",
            "default_destination_concurrency_negative_feedback",
        ),
        cohort_limit=float(
            num(
                "destination_concurrency_failed_cohort_limit",
                "default_destination_concurrency_failed_cohort_limit",
            )
        ),
        rate_delay=seconds("destination_rate_delay", "default_destination_rate_delay"),
    )


class TransportTable:
    def __init__(self, cfg, limits: dict[str, int]) -> None:
        self.cfg = cfg
        self.limits = limits
        self.default_limit = cfg.get_int("default_process_limit")
        self.cache: dict[str, TransportSettings] = {}

    def get(self, transport: str) -> TransportSettings:
        hit = self.cache.get(transport)
        if hit is None:
            limit = self.limits.get(transport, self.default_limit)
            hit = self.cache[transport] = settings_for(self.cfg, transport, limit)
        return hit

    def defined(self, transport: str) -> bool:
        return transport in self.limits


def load_transports(cfg) -> TransportTable:
    """Settings for every unix service of master.cf (the possible transports)."""
    limits: dict[str, int] = {}
    try:
        entries = read_master_cf(cfg.master_cf, cfg.get_int("default_process_limit"))
    except ConfigError as exc:
        log.warning("%s", exc)
        entries = []
    for entry in entries:
        if entry.type == "unix":
            limits[entry.name] = entry.maxproc
    return TransportTable(cfg, limits)
