"""common.egress - egress pools: which source address a batch leaves from, with warm-up caps

SYNOPSIS
    from mta.common.egress import Egress, EgressConfig, Source, open_egress, setup_problems
    egress = open_egress(cfg)                   # None when no pool is configured
    pool = egress.pool_for(sender, header_pool) # "" for none
    src = egress.choose(pool, site, time.time())    # Source | None (every source capped)
    req.attrs["source_address"], req.attrs["helo_name"] = src.address, src.helo
    egress.count(src.name, site, n, time.time())    # n messages went out
    egress.close()

    config = EgressConfig.from_config(cfg)      # ConfigError naming the table and key
    problems = setup_problems(cfg)              # [(param, why, fatal)] for mta check

DESCRIPTION
    A bulk sender sends from several source addresses, grouped in named
    pools. egress_sources names each source:

        src1    address=192.0.2.10 helo=mail1.example.com
        src2    address=192.0.2.11 helo=mail2.example.com warmup=new start=2026-12-01

    address is an IP literal that must be configured on this host;
    helo is the EHLO name the smtp client gives from it (empty: its own
    smtp_helo_name). A new address is warmed up: warmup names a
    schedule of egress_warmup_schedules ("new  50, 100, 250, 500"), the
    daily caps of messages per destination site, and start the UTC day
    that is day 1. Before its start day a warmed-up source sends
    nothing; after the schedule's last day it has no cap.

    egress_pools gives each pool its sources with integer weights
    ("bulk  src1:3, src2:1"; the weight defaults to 1). Pool and source
    names are 1 to 64 characters of [a-z0-9._-].

    pool_for() finds a message's pool: the pool its egress_pool_header
    named (cleanup keeps it as the envelope attribute "pool") when that
    pool exists, else egress_pool_maps looked up with the envelope
    sender as sender_dependent_relayhost_maps is (user+ext@domain,
    user@domain, @domain), else egress_default_pool; "" means no pool:
    the message leaves as it always did. A table that fails for now
    raises mta.maps.MapRetry.

    choose() picks one source of a pool at random in proportion to
    the weights, among the sources whose warm-up cap for the site and
    the current UTC day is not reached; None when every source is
    capped (the caller defers the batch). count() records messages
    sent; the counts are common/egress_counts's, in the table
    egress_state_map names (memory only when it is empty), so caps
    hold across restarts; remaining() says how many messages a source
    may still send to a site today (None: no cap), for a caller that
    sizes batches to fit. A pool without warm-up sources never looks at
    the counts. One process (qmgr) opens the state with open_egress()
    and close()s it before it opens it again on a reload: LMDB allows
    one open environment per file and process.

    The tables egress_sources, egress_pools and egress_warmup_schedules
    are read whole when the configuration is, so their type must list
    its entries (texthash:, lmdb:, inline: ...). A bad entry (an
    unknown source in a pool, an address that is not an IP literal or
    not local, a bad weight, schedule or date, an unknown option) is a
    ConfigError naming the table and the key; setup_problems() lists
    every such problem for mta check, each fatal, and a pool that
    egress_pool_maps names but egress_pools lacks as a warning.

SECURITY
    The pool header's value comes from the message (cleanup keeps only
    a plain name) and the sender from the network: both are only
    compared with configured names or used as table keys. Runs inside
    qmgr, unprivileged.

SEE ALSO
    mta/common/egress_counts.py (the counts), mta/smtp/__init__.py (how
    a request's source_address and helo_name are used).
"""

from __future__ import annotations

import datetime
import ipaddress
import random
import re
import socket
from bisect import bisect_right
from dataclasses import dataclass, field
from itertools import accumulate

from mta import log
from mta.common.addr_find import find_address
from mta.common.egress_counts import WarmupCounts
from mta.common.kv_store import MemoryStore, open_store
from mta.config.errors import ConfigError
from mta.maps import Maps
from mta.maps.maps import MapError, MapRetry

EGRESS_NAME_RE = re.compile(r"[a-z0-9._-]{1,64}\Z")  # a pool, source or schedule name
EGRESS_SOURCE_OPTIONS = ("address", "helo", "warmup", "start")
EGRESS_MAX_WEIGHT = 1_000_000
_HELO_RE = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])\Z")
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}\Z")
_FIELD_RE = re.compile(r"[!-9;-~]+\Z")  # a header field name: printable, no colon
_SPLIT = re.compile(r"[\s,]+")
_EPOCH = datetime.date(1970, 1, 1)


@dataclass(frozen=True)
class Source:
    """One source address: name, address, EHLO name, and its warm-up schedule."""

    name: str
    address: str
    helo: str = ""  # "": the smtp client's smtp_helo_name
    schedule: tuple[int, ...] = ()  # daily caps per site; () no warm-up
    start: datetime.date | None = None  # day 1 of the schedule

    def cap(self, day: datetime.date) -> int | None:
        """The most messages per site on day (UTC); None for no cap."""
        if not self.schedule or self.start is None:
            return None
        n = (day - self.start).days
        if n < 0:
            return 0  # not started yet
        return self.schedule[n] if n < len(self.schedule) else None


@dataclass(frozen=True)
class Pool:
    """A named group of sources with weights."""

    name: str
    sources: tuple[Source, ...]
    weights: tuple[int, ...]
    cum_weights: tuple[int, ...] = field(init=False, repr=False, compare=False)
    warmed: bool = field(init=False, repr=False, compare=False)  # a source has a schedule

    def __post_init__(self) -> None:
        object.__setattr__(self, "cum_weights", tuple(accumulate(self.weights)))
        object.__setattr__(self, "warmed", any(s.schedule for s in self.sources))


@dataclass
class EgressConfig:
    """The egress_* parameters, parsed and checked."""

    sources: dict[str, Source] = field(default_factory=dict)
    pools: dict[str, Pool] = field(default_factory=dict)
    schedules: dict[str, tuple[int, ...]] = field(default_factory=dict)
    pool_maps: Maps | None = None
    default_pool: str = ""
    header: str = ""  # egress_pool_header
    delimiter: str = ""  # recipient_delimiter, for the egress_pool_maps look-up
    broken: set[str] = field(default_factory=set)  # "pool:NAME" ... left out for a problem

    @property
    def enabled(self) -> bool:
        return bool(self.pools)

    @classmethod
    def from_config(cls, cfg, check_local: bool = True) -> EgressConfig:
        """Parse and check every egress_* parameter; the first problem is a ConfigError.

        check_local: refuse an address this host cannot bind to."""
        config, problems = parse_egress(cfg, check_local)
        if problems:
            raise problems[0]
        return config

    def pool_for(self, sender: str, header_pool: str = "") -> str:
        """The pool of a message from sender whose pool header said header_pool; "" none."""
        if header_pool and header_pool in self.pools:
            return header_pool
        if self.pool_maps and "@" in sender:
            found = find_address(self.pool_maps, sender, self.delimiter, local=False)
            if found is not None:
                name = found.strip().lower()
                if name in self.pools:
                    return name
                log.warning("egress_pool_maps: %s: no pool named %r in egress_pools", sender, name)
        return self.default_pool


class Egress:
    """The chooser: a configuration, the warm-up counts and a random source."""

    def __init__(self, config: EgressConfig, store=None, rng: random.Random | None = None) -> None:
        self.config = config
        self.counts = WarmupCounts(MemoryStore() if store is None else store)
        self.rng = rng or random.Random()
        self._day: tuple[int, datetime.date, str] = (-1, _EPOCH, "")

    def pool_for(self, sender: str, header_pool: str = "") -> str:
        return self.config.pool_for(sender, header_pool)

    def _today(self, now: float) -> tuple[datetime.date, str]:
        dayno = int(now // 86400)
        if dayno != self._day[0]:
            day = _EPOCH + datetime.timedelta(days=dayno)
            self._day = (dayno, day, day.isoformat())
        return self._day[1], self._day[2]

    def choose(self, pool: str, site: str, now: float) -> Source | None:
        """A source of pool for a batch to site; None when every one is capped today.

        KeyError for a pool that is not configured."""
        p = self.config.pools[pool]
        if not p.warmed:
            return self._pick(p.sources, p.cum_weights)
        day, key = self._today(now)
        open_ = [
            i
            for i, s in enumerate(p.sources)
            if (cap := s.cap(day)) is None or self.counts.get(key, s.name, site) < cap
        ]
        if len(open_) == len(p.sources):
            return self._pick(p.sources, p.cum_weights)
        if not open_:
            return None
        sources = [p.sources[i] for i in open_]
        return self._pick(sources, list(accumulate(p.weights[i] for i in open_)))

    def _pick(self, sources, cum_weights) -> Source:
        if len(sources) == 1:
            return sources[0]
        return sources[bisect_right(cum_weights, self.rng.random() * cum_weights[-1])]

    def remaining(self, source: str, site: str, now: float) -> int | None:
        """Messages source may still send to site today; None for no cap."""
        day, key = self._today(now)
        cap = self.config.sources[source].cap(day)
        if cap is None:
            return None
        return max(0, cap - self.counts.get(key, source, site))

    def count(self, source: str, site: str, n: int, now: float) -> None:
        """Record n messages sent from source to site at now (only a source that is
        warmed up is counted: no other ever asks for its count)."""
        src = self.config.sources.get(source)
        if n > 0 and src is not None and src.schedule:
            self.counts.add(self._today(now)[1], source, site, n)

    def flush(self) -> None:
        self.counts.flush()

    def save(self) -> None:
        """Write the counts not written yet, if any; a failure is logged.

        qmgr calls it before it hands batches out, so that a crash never
        loses the count of mail that left."""
        if self.counts.dirty:
            self.counts.flush_logged()

    def close(self) -> None:
        self.counts.close()


def open_egress(cfg, check_local: bool = True, rng: random.Random | None = None) -> Egress | None:
    """The chooser for cfg, or None when no pool is configured.

    ConfigError for a bad setting; kv_store.StoreError when egress_state_map
    cannot be opened."""
    config = EgressConfig.from_config(cfg, check_local)
    if not config.enabled:
        return None
    return Egress(config, open_store(cfg, "egress_state_map"), rng)


def setup_problems(cfg) -> list[tuple[str, str, bool]]:
    """For mta check: (parameter, why, fatal) of the egress settings."""
    config, problems = parse_egress(cfg, check_local=True)
    out = [(p.param or "", p.message, True) for p in problems]
    if config.pool_maps:
        try:
            named = {v.strip().lower() for d in config.pool_maps for _, v in d.items()}
        except MapError:
            named = set()  # a table type that cannot list its entries: checked at use
        for name in sorted(n for n in named if n not in config.pools):
            if f"pool:{name}" in config.broken:
                continue
            out.append(("egress_pool_maps", f"names pool {name!r}, not in egress_pools", False))
    return out


# ---------------------------------------------------------------- parsing


class _Broken(ValueError):
    """The entry names another entry that has a problem of its own (reported once)."""


def parse_egress(cfg, check_local: bool = True) -> tuple[EgressConfig, list[ConfigError]]:
    """(the configuration, every problem found); entries with a problem are left out,
    and so are the entries that name them, without a problem of their own."""
    bad: list[ConfigError] = []
    config = EgressConfig(
        header=cfg.get("egress_pool_header").strip(),
        delimiter=cfg.get("recipient_delimiter"),
    )
    broken = config.broken  # "schedule:NAME", "source:NAME", "pool:NAME" with a problem
    if config.header and not _FIELD_RE.match(config.header):
        bad.append(ConfigError(f"not a header name: {config.header!r}", param="egress_pool_header"))
    param = "egress_warmup_schedules"
    for name, value in _entries(cfg, param, bad).items():
        try:
            config.schedules[name] = _parse_schedule(value)
        except ValueError as exc:
            _entry_problem(bad, broken, param, f"schedule:{name}", exc)
    param = "egress_sources"
    for name, value in _entries(cfg, param, bad).items():
        try:
            source = _parse_source(name, value, config.schedules, broken)
            if check_local and not address_is_local(source.address):
                raise ValueError(f"address {source.address} is not configured on this host")
            config.sources[name] = source
        except ValueError as exc:
            _entry_problem(bad, broken, param, f"source:{name}", exc)
    param = "egress_pools"
    for name, value in _entries(cfg, param, bad).items():
        try:
            config.pools[name] = _parse_pool(name, value, config.sources, broken)
        except ValueError as exc:
            _entry_problem(bad, broken, param, f"pool:{name}", exc)
    config.default_pool = cfg.get("egress_default_pool").strip().lower()
    pool = config.default_pool
    if pool and pool not in config.pools and f"pool:{pool}" not in broken:
        why = f"no pool named {config.default_pool!r} in egress_pools"
        bad.append(ConfigError(why, param="egress_default_pool"))
    try:
        config.pool_maps = Maps.from_param(cfg, "egress_pool_maps")
    except (MapError, MapRetry) as exc:
        bad.append(ConfigError(str(exc), param="egress_pool_maps"))
    return config, bad


def _entry_problem(bad: list, broken: set, param: str, entry: str, exc: ValueError) -> None:
    broken.add(entry)
    if not isinstance(exc, _Broken):
        bad.append(ConfigError(f"{entry.partition(':')[2]}: {exc}", param=param))


def _entries(cfg, param: str, bad: list[ConfigError]) -> dict[str, str]:
    """Every entry of param's tables, the first table's first; names checked."""
    out: dict[str, str] = {}
    try:
        for table in Maps.from_param(cfg, param):
            for key, value in table.items():
                out.setdefault(key.strip().lower(), value)
    except (MapError, MapRetry) as exc:
        bad.append(ConfigError(f"{exc} (use a table that can be listed)", param=param))
        return {}
    for key in [k for k in out if not EGRESS_NAME_RE.match(k)]:
        bad.append(ConfigError(f"{key}: a name is 1 to 64 of a-z 0-9 . _ -", param=param))
        del out[key]
    return out


def _parse_schedule(value: str) -> tuple[int, ...]:
    caps = []
    for word in filter(None, _SPLIT.split(value)):
        if not word.isdigit() or int(word) < 1:
            raise ValueError(f"a daily cap must be a positive number, not {word!r}")
        caps.append(int(word))
    if not caps:
        raise ValueError("no daily caps")
    return tuple(caps)


def _parse_source(name: str, value: str, schedules: dict, broken: set) -> Source:
    opts: dict[str, str] = {}
    for word in value.split():
        key, eq, val = word.partition("=")
        key = key.lower()
        if not eq or not val:
            raise ValueError(f"expected option=value, not {word!r}")
        if key not in EGRESS_SOURCE_OPTIONS:
            raise ValueError(f"unknown option {key!r}")
        if key in opts:
            raise ValueError(f"{key} given twice")
        opts[key] = val
    if "address" not in opts:
        raise ValueError("no address=")
    address = _parse_address(opts["address"])
    helo = opts.get("helo", "")
    if helo and not _HELO_RE.match(helo):
        raise ValueError(f"not a host name: helo={helo}")
    if ("warmup" in opts) != ("start" in opts):
        raise ValueError("warmup= and start= go together")
    schedule: tuple[int, ...] = ()
    start = None
    if "warmup" in opts:
        schedule = schedules.get(opts["warmup"].lower(), ())
        if not schedule and f"schedule:{opts['warmup'].lower()}" in broken:
            raise _Broken(opts["warmup"])
        if not schedule:
            raise ValueError(f"no schedule named {opts['warmup']!r} in egress_warmup_schedules")
        start = _parse_date(opts["start"])
    return Source(name, address, helo, schedule, start)


def _parse_address(text: str) -> str:
    bare = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    try:
        return str(ipaddress.ip_address(bare))
    except ValueError:
        raise ValueError(f"address {text!r} is not an IP address") from None


def _parse_date(text: str) -> datetime.date:
    try:
        if _DATE_RE.match(text):
            return datetime.date.fromisoformat(text)
    except ValueError:
        pass
    raise ValueError(f"start={text}: expected a date, YYYY-MM-DD")


def _parse_pool(name: str, value: str, sources: dict[str, Source], broken: set) -> Pool:
    members: dict[str, int] = {}
    for item in filter(None, _SPLIT.split(value)):
        src, colon, weight = item.partition(":")
        src = src.lower()
        if f"source:{src}" in broken:
            raise _Broken(src)
        if src not in sources:
            raise ValueError(f"no source named {src!r} in egress_sources")
        if src in members:
            raise ValueError(f"source {src!r} listed twice")
        if colon and not (weight.isdigit() and 1 <= int(weight) <= EGRESS_MAX_WEIGHT):
            raise ValueError(f"{item}: a weight is a whole number from 1 to {EGRESS_MAX_WEIGHT}")
        members[src] = int(weight) if colon else 1
    if not members:
        raise ValueError("no sources")
    return Pool(name, tuple(sources[s] for s in members), tuple(members.values()))


def address_is_local(address: str) -> bool:
    """Whether this host can send from address (a socket can be bound to it)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.bind((address, 0))
    except OSError:
        return False
    return True
