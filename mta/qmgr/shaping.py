"""qmgr.shaping - per-site limits, and backing off when a provider says so

SYNOPSIS
    from mta.qmgr.shaping import Shaper
    shaper = Shaper(cfg)
    shaper.applies("smtp")                       # shaping_transports lists it
    shaper.configure(dest, now)                  # a site's limits on its scheduler queue
    shaper.request_attrs(dest)                   # {"reuse_count_limit": "100"} or {}
    actions = shaper.on_reply(dest, dsn, reply, now)  # reply rules; [] when none matched

DESCRIPTION
    shaping_table gives each site (qmgr/sites.py) its limits, as
    "name=value" words; the entry "default" is for every site without
    one of its own. Tables named in shaping_table are asked first, then
    the built-in mta/qmgr/shaping_limits.texthash (unless
    shaping_builtin_tables = no). The first table that knows a site
    gives all of its limits. Words:

        concurrency=N            deliveries at once to the site (the
                                 destination concurrency limit; the
                                 window still starts small and grows)
        messages_per_minute=N    deliveries started per minute, spread
        messages_per_hour=N      evenly (the stricter of the two wins)
        per_connection=N         deliveries per SMTP connection before
                                 the client closes it (the smtp client's
                                 smtp_connection_reuse_count_limit)
        connections_per_minute=N new connections to the site per minute,
                                 paced by the smtp clients together
                                 (mta/smtp/conn_pace.py)

    shaping_reply_maps (then the built-in shaping_replies.regexp) is
    asked with "DSN REPLY" of every deferred or bounced recipient and
    every failed hop of a shaped site; the answer is a list of actions:

        suspend=TIME             no delivery to the site for TIME; mail
                                 queued for it is deferred with the reply
                                 as the reason ("delivery temporarily
                                 suspended: site gmail: 421 4.7.28 ...")
        concurrency=P%           the site's window cut to P percent
                                 (at least 1); it grows back with each
                                 success, as after any failure
        rate=P%                  the site's message rate cut to P
                                 percent, for=TIME (default 1h), then
                                 restored
        for=TIME                 how long a rate cut lasts
        scope=site               with egress pools: act on every source's
                                 queue of the site, not only on the
                                 source that got the reply (scope=source,
                                 the default)

    Each action is logged once per reply ("gmail: shaping: 421 4.7.28
    ...: suspend 30m"). A suspension ends by itself, when qmgr logs
    "delivery resumes"; suspensions and rate cuts live in qmgr's memory
    and end when it restarts.

    With egress pools (common/egress.py), a site's mail is queued per
    source address ("gmail/src1"): providers count per sending address,
    so the limits and the reply rules' actions hold for each source at
    each site, and a 421 that suspends one source leaves the others
    sending.

    A limit or action word that does not parse is a ConfigError naming
    the table and key at start-up; mta check reports it (problems()).

SECURITY
    Replies come from remote servers; they are only matched against the
    administrator's patterns (cut to REPLY_KEY_LIMIT characters).
"""

from __future__ import annotations

import os

from mta import log
from mta.config.errors import ConfigError
from mta.config.values import parse_time
from mta.maps import MapError, MapRetry, Maps, open_map
from mta.maps.dict_regexp import RegexpDict
from mta.maps.text import preload_source

HERE = os.path.dirname(__file__)
BUILTIN_LIMITS = os.path.join(HERE, "shaping_limits.texthash")
BUILTIN_REPLIES = os.path.join(HERE, "shaping_replies.regexp")
preload_source(BUILTIN_LIMITS)  # read while qmgr may still be root
preload_source(BUILTIN_REPLIES)
LIMIT_WORDS = (
    "concurrency",
    "messages_per_minute",
    "messages_per_hour",
    "per_connection",
    "connections_per_minute",
)
REPLY_KEY_LIMIT = 2000
DEFAULT_CUT_TIME = 3600.0  # seconds a rate cut lasts when for= is not given


class SiteLimits:
    __slots__ = ("concurrency", "interval", "per_connection", "connections_per_minute")

    def __init__(
        self,
        concurrency: int = 0,
        interval: float = 0.0,
        per_connection: int = 0,
        connections_per_minute: int = 0,
    ):
        self.concurrency = concurrency  # 0: the transport's limit
        self.interval = interval  # seconds between delivery starts; 0: no rate limit
        self.per_connection = per_connection  # 0: the client's own limit
        self.connections_per_minute = connections_per_minute  # 0: unpaced


def parse_limits(text: str, where: str) -> SiteLimits:
    """A shaping_table value; ConfigError "WHERE: ..." when a word does not parse."""
    values: dict[str, int] = {}
    for word in text.replace(",", " ").split():
        name, eq, value = word.partition("=")
        name = name.strip().lower()
        if not eq or name not in LIMIT_WORDS:
            raise ConfigError(
                f"{where}: unknown limit {word!r} (expected {', '.join(LIMIT_WORDS)})"
            )
        try:
            number = int(value)
            if number < 0:
                raise ValueError
        except ValueError:
            raise ConfigError(f"{where}: {name} needs a whole number, not {value!r}") from None
        values[name] = number
    intervals = [60.0 / values["messages_per_minute"]] if values.get("messages_per_minute") else []
    if values.get("messages_per_hour"):
        intervals.append(3600.0 / values["messages_per_hour"])
    return SiteLimits(
        values.get("concurrency", 0),
        max(intervals, default=0.0),
        values.get("per_connection", 0),
        values.get("connections_per_minute", 0),
    )


class ReplyActions:
    __slots__ = ("suspend", "concurrency", "rate", "duration", "whole_site", "text")

    def __init__(self) -> None:
        self.whole_site = False  # scope=site: every source's queue of the site
        self.suspend = 0.0
        self.concurrency = 0.0  # fraction of the window kept; 0: unchanged
        self.rate = 0.0  # fraction of the rate kept; 0: unchanged
        self.duration = DEFAULT_CUT_TIME
        self.text = ""

    def __bool__(self) -> bool:
        return bool(self.suspend or self.concurrency or self.rate)


def _percent(value: str) -> float:
    if not value.endswith("%"):
        raise ValueError
    number = float(value[:-1])
    if not 0 < number <= 100:
        raise ValueError
    return number / 100.0


def parse_actions(text: str, where: str) -> ReplyActions:
    """A reply rule's result; ConfigError "WHERE: ..." when it does not parse."""
    out = ReplyActions()
    words = []
    for word in text.replace(",", " ").split():
        name, eq, value = word.partition("=")
        name = name.strip().lower()
        try:
            if not eq:
                raise ValueError
            if name == "suspend":
                out.suspend = float(parse_time(value, "m"))
            elif name == "concurrency":
                out.concurrency = _percent(value)
            elif name == "rate":
                out.rate = _percent(value)
            elif name in ("for", "duration"):
                out.duration = float(parse_time(value, "m"))
            elif name == "scope" and value.lower() in ("site", "source"):
                out.whole_site = value.lower() == "site"
            else:
                raise ConfigError(
                    f"{where}: unknown action {word!r} (expected suspend=TIME, "
                    "concurrency=P%, rate=P%, for=TIME, scope=site|source)"
                )
        except ValueError:
            raise ConfigError(f"{where}: bad value in {word!r}") from None
        words.append(word)
    out.text = " ".join(words)
    return out


def _tables(cfg, param: str, builtin) -> list:
    tables = list(Maps.from_param(cfg, param))
    if cfg.get_bool("shaping_builtin_tables"):
        tables.append(builtin())
    return tables


def site_of(key: str) -> str:
    """The site of a scheduler key: "gmail", or "gmail/src1" for mail from a pool's source."""
    return key.partition("/")[0]


class Shaper:
    def __init__(self, cfg) -> None:
        self.transports = {t.lower() for t in cfg.get_list("shaping_transports")}
        self.limit_tables = _tables(
            cfg, "shaping_table", lambda: open_map(f"texthash:{BUILTIN_LIMITS}", cfg)
        )
        self.reply_tables = _tables(
            cfg,
            "shaping_reply_maps",
            lambda: RegexpDict(f"regexp:{BUILTIN_REPLIES}", BUILTIN_REPLIES),
        )
        self.limits: dict[str, SiteLimits] = {}  # site -> limits, parsed once
        self.configured: dict[tuple[str, str], object] = {}  # (transport, site) -> dest object
        self.rate_cuts: dict[str, tuple[float, float]] = {}  # site -> (fraction, until)
        self.base_delay: dict[str, float] = {}  # site -> its rate delay before shaping
        self.actions: dict[str, ReplyActions] = {}  # rule result -> parsed actions
        self.warned: set[str] = set()

    def applies(self, transport: str) -> bool:
        return transport.lower() in self.transports

    def _warn(self, text: str) -> None:
        if text not in self.warned:
            self.warned.add(text)
            log.warning("%s", text)

    def limits_of(self, site: str) -> SiteLimits:
        found = self.limits.get(site)
        if found is not None:
            return found
        found = SiteLimits()
        for key in (site, "default"):
            text, where = self._ask(self.limit_tables, key)
            if text is not None:
                try:
                    found = parse_limits(text, where)
                except ConfigError as exc:
                    self._warn(f"shaping_table: {exc}")  # mta check names it; go on unshaped
                break
        self.limits[site] = found
        return found

    def _ask(self, tables, key: str) -> tuple[str | None, str]:
        for table in tables:
            try:
                found = table.lookup(key)
            except (MapRetry, MapError) as exc:
                self._warn(f"shaping: {exc}")
                continue
            if found is not None:
                return found, f"{getattr(table, 'spec', table)}: {key}"
        return None, ""

    def configure(self, dest, now: float) -> None:
        """Put the site's limits (and any rate cut) on a scheduler destination, once."""
        k = (dest.transport.name, dest.key)
        if self.configured.get(k) is dest:
            return
        self.configured[k] = dest
        self.base_delay[dest.key] = dest.rate_delay  # destination_rate_delay, if any
        limits = self.limits_of(site_of(dest.key))
        if limits.concurrency:
            dest.limit = limits.concurrency
            dest.init_window = min(dest.init_window, limits.concurrency)
            dest.window = min(dest.window, float(limits.concurrency))
        dest.rate_delay = self._interval(dest.key, limits, now) or dest.rate_delay

    def _interval(self, site: str, limits: SiteLimits, now: float) -> float:
        cut = self.rate_cuts.get(site)
        if cut is None:
            return limits.interval
        fraction, until = cut
        if until <= now:
            del self.rate_cuts[site]
            return limits.interval
        base = limits.interval or 1.0  # an unlimited site cut to P%: P deliveries a second
        return base / fraction

    def restore(self, sched, now: float) -> None:
        """End rate cuts whose time is up."""
        for site, (_, until) in list(self.rate_cuts.items()):
            if until <= now:
                del self.rate_cuts[site]
                for (transport, key), dest in list(self.configured.items()):
                    if key == site and sched.find(transport, key) is dest:
                        dest.rate_delay = self.limits_of(
                            site_of(site)
                        ).interval or self.base_delay.get(site, 0.0)
                log.info("%s: shaping: rate restored", site)

    def is_shaped(self, dest) -> bool:
        return self.configured.get((dest.transport.name, dest.key)) is dest

    def request_attrs(self, dest) -> dict[str, str]:
        limits = self.limits_of(site_of(dest.key))
        out = {}
        if limits.per_connection:
            out["reuse_count_limit"] = str(limits.per_connection)
        if limits.connections_per_minute:
            out["connections_per_minute"] = str(limits.connections_per_minute)
            out["connection_pace_key"] = dest.key  # the site, and the source with pools
        return out

    def on_reply(self, dest, dsn: str, reply: str, now: float, sched=None):
        """Apply the reply rules to one reply of a shaped site: (the actions, the
        destinations they were applied to), or None when no rule matched."""
        key = f"{dsn} {' '.join(reply.split())}"[:REPLY_KEY_LIMIT]
        text, where = self._ask(self.reply_tables, key)
        if not text:
            return None
        actions = self.actions.get(text)
        if actions is None:
            try:
                actions = parse_actions(text, where)
            except ConfigError as exc:
                self._warn(f"shaping_reply_maps: {exc}")
                return None
            self.actions[text] = actions
        if not actions:
            return None
        targets = [dest]
        if actions.whole_site and sched is not None:
            site = site_of(dest.key)
            targets += [
                d
                for (t, k), d in self.configured.items()
                if d is not dest and site_of(k) == site and sched.find(t, k) is d
            ]
        for d in targets:
            if actions.concurrency:
                d.window = max(1.0, float(int(d.window * actions.concurrency + 0.5)))
            if actions.rate:
                self.rate_cuts[d.key] = (actions.rate, now + actions.duration)
                d.rate_delay = self._interval(d.key, self.limits_of(site_of(d.key)), now)
            if actions.suspend:
                d.dead_until = max(d.dead_until, now + actions.suspend)
        log.info("%s: shaping: %s: %s", dest.key, key[:200], actions.text)
        return actions, targets


def problems(cfg) -> list[tuple[str, str, bool]]:
    """For mta check: shaping_table and shaping_reply_maps entries that do not parse."""
    out: list[tuple[str, str, bool]] = []
    for param, parse in (("shaping_table", parse_limits), ("shaping_reply_maps", parse_actions)):
        for spec in cfg.get_list(param):
            try:
                table = open_map(spec, cfg)
            except Exception:  # noqa: BLE001 - the table check reports tables that do not open
                continue
            if hasattr(table, "rules"):
                entries = [
                    (f"line {r.line}", r.result or "") for r in table.rules if r.kind == "match"
                ]
            else:
                try:
                    entries = list(table.items())
                except Exception:  # noqa: BLE001 - a table that cannot list is not checked
                    continue
            for key, value in entries:
                try:
                    parse(value, f"{spec}, {key}")
                except ConfigError as exc:
                    out.append((param, exc.message, True))
    return out
