"""common.suppress - the suppression list: recipients mail is no longer sent to

SYNOPSIS
    from mta.common.suppress import SuppressionList, Entry, open_suppression
    sl = open_suppression(cfg)                  # None when suppression_map is empty
    sl.add("u@example.com", klass="invalid_mailbox", reason="550 5.1.1 ...",
           expires=now + 400 * 86400, source="bounce", scope="")
    entry = sl.check("u@example.com", sender="news@shop.example")  # Entry | None
    sl.remove("u@example.com", scope="shop.example")
    for entry in sl.entries(): ...
    sl.learn(st, klass, sender, queue_id)       # a hard bounce or a complaint

DESCRIPTION
    Bulk senders stop mailing addresses that bounced hard or complained:
    mailing them again costs reputation. The list lives in the LMDB file
    suppression_map names (lmdb:PATH, the file PATH.lmdb), shared by
    every process: qmgr adds to it and drops suppressed recipients,
    smtpd asks it at RCPT TO, the bounce address handler adds
    complaints, and "mta suppress" edits it.

    An entry is an address (compared in lower case) and a scope: ""
    for every sender, or a sender domain ("shop.example") for mail from
    that domain and its subdomains only. Its value records the class
    (common/bounce_class), the reason (the reply), when it was added,
    when it expires (0: never), where it came from (bounce, feedback,
    manual, import) and the queue id that taught it. check() finds the
    global entry or the sender domain's; an expired entry counts as
    absent (and is left for "mta suppress list --expired"/prune).

    learn() applies suppression_classes: a permanent failure (5.x.x)
    whose class is listed there, and any complaint, add an entry with
    that class's lifetime ("invalid_mailbox:400d"; 0 never expires),
    scoped by suppression_scope (global, or sender_domain). An address
    already listed keeps its earlier entry unless the new one lasts
    longer.

    Keys are "ADDRESS<TAB>SCOPE" (so one address's entries are
    neighbours: of_address() reads them with one cursor); values are
    JSON objects. Store errors
    (a full disk, a broken file) are StoreError naming the file: the
    callers log them and go on, since suppression is advice and must
    never lose mail that is already queued.

SECURITY
    Addresses come from the network; they are stored as text and never
    interpreted. The file is written by mail_owner's processes and by
    root through "mta suppress", which gives it to mail_owner.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass

from mta.common.bounce_class import CLASSES, COMPLAINT
from mta.common.kv_store import LMDB_KINDS, LMDB_SUFFIX, LmdbStore, StoreError
from mta.config.errors import ConfigError
from mta.config.values import parse_time

SOURCES = ("bounce", "feedback", "manual", "import")
_stores: dict[str, LmdbStore] = {}  # path -> the one open store of this process


@dataclass
class Entry:
    address: str
    scope: str = ""  # "" global, else a sender domain
    klass: str = ""
    reason: str = ""
    added: float = 0.0
    expires: float = 0.0  # 0: never
    source: str = "manual"
    queue_id: str = ""

    def expired(self, now: float) -> bool:
        return bool(self.expires) and self.expires <= now

    def as_json(self) -> dict:
        out = asdict(self)
        out["class"] = out.pop("klass")
        out["scope"] = self.scope or "global"
        return out

    @classmethod
    def from_json(cls, data: dict) -> Entry:
        """An entry from as_json()'s form; ValueError for one that is not."""
        if not isinstance(data, dict) or not isinstance(data.get("address"), str):
            raise ValueError("an entry needs an address")
        address = normal_address(data["address"])
        scope = str(data.get("scope") or "")
        klass = str(data.get("class") or "")
        if klass and klass not in CLASSES:
            raise ValueError(f"unknown class {klass!r}")
        source = str(data.get("source") or "import")
        if source not in SOURCES:
            raise ValueError(f"unknown source {source!r}")
        return cls(
            address=address,
            scope=normal_scope(scope),
            klass=klass,
            reason=str(data.get("reason") or ""),
            added=float(data.get("added") or 0),
            expires=float(data.get("expires") or 0),
            source=source,
            queue_id=str(data.get("queue_id") or ""),
        )


def normal_address(address: str) -> str:
    """An address as the list keys it; ValueError when it cannot be one."""
    address = address.strip().strip("<>").strip().lower()
    if not address or any(c.isspace() for c in address) or "\t" in address:
        raise ValueError(f"not an address: {address!r}")
    return address


def normal_scope(scope: str) -> str:
    """ "" for global, else a lower-case domain."""
    scope = scope.strip().lower().lstrip("@")
    if scope in ("", "global", "*"):
        return ""
    if any(c.isspace() for c in scope) or "@" in scope:
        raise ValueError(f"not a sender domain: {scope!r}")
    return scope


def parse_lifetimes(cfg) -> dict[str, float]:
    """suppression_classes as {class: seconds}; 0 never expires. ConfigError when bad."""
    out: dict[str, float] = {}
    for item in cfg.get_list("suppression_classes"):
        name, _, life = item.partition(":")
        name = name.strip().lower()
        if name not in CLASSES:
            raise ConfigError(f"unknown bounce class {name!r}", param="suppression_classes")
        try:
            out[name] = float(parse_time(life.strip() or "0", "d"))
        except ValueError as exc:
            raise ConfigError(f"{item!r}: {exc}", param="suppression_classes") from None
    return out


def _key(address: str, scope: str) -> str:
    return f"{address}\t{scope}"


def _domain_scopes(sender: str) -> list[str]:
    """The sender's domain and its parents: a.b.example -> a.b.example, b.example, example."""
    domain = sender.rpartition("@")[2].lower().rstrip(".")
    parts = domain.split(".") if domain else []
    return [".".join(parts[i:]) for i in range(len(parts))]


class SuppressionList:
    def __init__(self, store: LmdbStore, lifetimes: dict[str, float], scope: str = "global"):
        self.store = store
        self.lifetimes = lifetimes
        self.scope = scope

    @property
    def path(self) -> str:
        return self.store.path

    def get(self, address: str, scope: str = "") -> Entry | None:
        raw = self.store.get(_key(normal_address(address), normal_scope(scope)))
        return None if raw is None else _decode(raw)

    def check(self, address: str, sender: str = "", now: float | None = None) -> Entry | None:
        """The entry that suppresses mail from sender to address, if any."""
        now = time.time() if now is None else now
        try:
            address = normal_address(address)
        except ValueError:
            return None
        for scope in ("", *_domain_scopes(sender)):
            raw = self.store.get(_key(address, scope))
            if raw is not None:
                entry = _decode(raw)
                if entry is not None and not entry.expired(now):
                    return entry
        return None

    def add(
        self,
        address: str,
        scope: str = "",
        klass: str = "",
        reason: str = "",
        expires: float = 0.0,
        source: str = "manual",
        queue_id: str = "",
        now: float | None = None,
    ) -> Entry:
        entry = Entry(
            address=normal_address(address),
            scope=normal_scope(scope),
            klass=klass,
            reason=" ".join(reason.split())[:500],
            added=time.time() if now is None else now,
            expires=expires,
            source=source,
            queue_id=queue_id,
        )
        self.put(entry)
        return entry

    def put(self, entry: Entry) -> None:
        self.store.put(_key(entry.address, entry.scope), json.dumps(entry.as_json()))

    def put_many(self, entries: list[Entry]) -> None:
        """Store entries in one transaction (an import)."""
        self.store.put_many([(_key(e.address, e.scope), json.dumps(e.as_json())) for e in entries])

    def of_address(self, address: str) -> list[Entry]:
        """Every entry of an address, global first, expired or not."""
        out = []
        for _, raw in self.store.items_from(normal_address(address) + "\t"):
            entry = _decode(raw)
            if entry is not None:
                out.append(entry)
        return out

    def remove(self, address: str, scope: str = "") -> bool:
        key = _key(normal_address(address), normal_scope(scope))
        if self.store.get(key) is None:
            return False
        self.store.delete(key)
        return True

    def remove_many(self, entries: list[Entry]) -> None:
        self.store.delete_many([_key(e.address, e.scope) for e in entries])

    def entries(self) -> Iterator[Entry]:
        for _, raw in self.store.items():
            entry = _decode(raw)
            if entry is not None:
                yield entry

    def learn(
        self,
        address: str,
        klass: str,
        dsn: str,
        reason: str,
        sender: str,
        queue_id: str,
        source: str = "bounce",
        now: float | None = None,
    ) -> Entry | None:
        """Add address when its failure suppresses (see DESCRIPTION); the entry or None."""
        if klass not in self.lifetimes:
            return None
        if klass != COMPLAINT and not dsn.startswith("5"):
            return None  # a temporary failure never suppresses
        now = time.time() if now is None else now
        life = self.lifetimes[klass]
        expires = now + life if life > 0 else 0.0
        scope = ""
        if self.scope == "sender_domain":
            scope = sender.rpartition("@")[2].lower() if "@" in sender else ""
        try:
            old = self.get(address, scope)
        except ValueError:
            return None
        if old is not None and (old.expires == 0 or (expires and old.expires >= expires)):
            return None
        return self.add(address, scope, klass, reason, expires, source, queue_id, now)

    def close(self) -> None:
        """Close the file for every user in this process."""
        if _stores.get(self.store.path) is self.store:
            del _stores[self.store.path]
        self.store.close()


def _decode(raw: str) -> Entry | None:
    try:
        return Entry.from_json(json.loads(raw))
    except (ValueError, TypeError):
        return None  # a damaged entry suppresses nothing


def store_path(cfg) -> str:
    """The file suppression_map names ("" when none); ConfigError when it is not lmdb:."""
    spec = cfg.get("suppression_map").strip()
    if not spec:
        return ""
    kind, _, name = spec.partition(":")
    if kind not in LMDB_KINDS or not name:
        raise ConfigError(f"use lmdb:PATH, not {spec!r}", param="suppression_map")
    return name + LMDB_SUFFIX


def open_suppression(cfg) -> SuppressionList | None:
    """The list of this configuration, None when suppression_map is empty.

    ConfigError for bad settings, StoreError when the file cannot be opened."""
    path = store_path(cfg)
    if not path:
        return None
    lifetimes = parse_lifetimes(cfg)
    scope = cfg.get("suppression_scope").strip().lower() or "global"
    if scope not in ("global", "sender_domain"):
        raise ConfigError(
            f"expected global or sender_domain, not {scope!r}", param="suppression_scope"
        )
    store = _stores.get(path)
    if store is None:
        # LMDB allows one open of a file per process: smtpd and qmgr in
        # one process (tests, sendmail -bs) share it
        store = _stores[path] = LmdbStore(path, cfg.get_size("lmdb_map_size"))
    return SuppressionList(store, lifetimes, scope)


def setup_problems(cfg) -> list[tuple[str, str, bool]]:
    """For mta check: (parameter, why, fatal) of the suppression and event settings."""
    out: list[tuple[str, str, bool]] = []
    try:
        parse_lifetimes(cfg)  # suppression_map's form is checked with the other LMDB tables
    except ConfigError as exc:
        out.append(("suppression_classes", exc.message, True))
    path = cfg.get("event_log_file").strip()
    if path and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
        out.append(("event_log_file", f"no directory for {path}: no events are written", False))
    out.extend(("bounce_class_maps", why, False) for why in class_table_problems(cfg))
    return out


def class_table_problems(cfg) -> list[str]:
    """Rules of bounce_class_maps' regexp and pcre tables whose result is not a class."""
    from mta.maps import open_map

    out = []
    for spec in cfg.get_list("bounce_class_maps"):
        try:
            table = open_map(spec, cfg)
        except Exception:  # noqa: BLE001 - the table itself is reported by the table check
            continue
        for rule in getattr(table, "rules", ()):
            if rule.kind != "match":
                continue
            result = (rule.result or "").strip().lower()
            if result not in CLASSES:
                out.append(f"{spec}, line {rule.line}: {rule.result!r} is not a bounce class")
    return out


__all__ = ["Entry", "StoreError", "SuppressionList", "open_suppression", "store_path"]
