"""common.dkim_keys - DKIM signing keys by name (dkim_key_table), and re-signing

SYNOPSIS
    from mta.common.dkim_keys import KeyTable, SigningSettings, resign, resign_for
    table = KeyTable(cfg)                  # dkim_key_table; table.enabled
    key = table.key("rsa1")                # DkimKey; DkimError when unusable
    settings = SigningSettings.from_config(cfg)
    signer = settings.signer([key])
    data = resign(settings, table, data, ["rsa1", "ed1"])   # new signatures on top
    data = resign_for(cfg, data, names)    # the same, tables kept per process

DESCRIPTION
    dkim_key_table maps a key name to "domain:selector:/path/key.pem",
    OpenDKIM's KeyTable form. A key file is read once and again only
    when it changes (inode, size, modification time).

    SigningSettings holds the main.cf settings (dkim_canonicalization,
    dkim_signed_headers, dkim_oversign_headers, dkim_signature_expiry),
    read once; its signer() is a common/dkim.Signer for some keys.
    cleanup (cleanup/dkim_sign.py) and the smtp client use it.

    resign() is for content changed after cleanup signed it (the smtp
    client's 8-bit to 7-bit conversion): data is the whole message as
    it will be sent, CRLF line ends, not dot-stuffed; the DKIM-Signature
    fields cleanup put on top (one per name) are replaced by new ones
    over the changed content, made with the same keys.

SECURITY
    Reads private key files (common/dkim.load_key refuses those open to
    others); never logs or returns key material.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from mta.common.dkim import DkimError, DkimKey, Signer, header_fields, load_key
from mta.maps import MapError, MapRetry, Maps


class KeyTable:
    """dkim_key_table, with the keys read so far."""

    def __init__(self, cfg) -> None:
        self.maps = Maps.from_param(cfg, "dkim_key_table")
        self.enabled = bool(self.maps)
        self._keys: dict[str, tuple[tuple[int, int, int], DkimKey]] = {}

    def key(self, name: str) -> DkimKey:
        """The key called name; DkimError when the table lacks it or it cannot be used.

        MapRetry passes to the caller (a table that does not answer)."""
        spec = self.maps.lookup(name)
        if spec is None:
            raise DkimError(f"dkim_key_table has no key named {name!r}")
        parts = spec.strip().split(":", 2)
        if len(parts) != 3 or not all(parts):
            raise DkimError(f"dkim_key_table: key {name!r}: expected domain:selector:path")
        domain, selector, path = parts
        try:
            st = os.stat(path)
        except OSError as exc:
            raise DkimError(f"{path}: cannot open key file: {exc.strerror}") from exc
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        cached = self._keys.get(name)
        if cached is not None and cached[0] == stamp:
            key = cached[1]
            if (key.path, key.domain, key.selector) == (path, domain.lower().rstrip("."), selector):
                return key
        key = load_key(domain, selector, path)
        self._keys[name] = (stamp, key)
        return key

    def keys(self, names: list[str]) -> list[DkimKey]:
        return [self.key(n) for n in names]


def setup_problems(cfg) -> list[tuple[str, str, bool]]:
    """What mta check says of the DKIM settings: (parameter, why, fatal).

    Each key of dkim_key_table (when its table type can be listed) must
    load, and be readable by mail_owner, who signs in cleanup; each key
    name dkim_signing_table lists must be in the key table. All are
    warnings: at run time such a message is deferred (or sent unsigned)
    with the reason in the log."""
    out: list[tuple[str, str, bool]] = []
    try:
        table = KeyTable(cfg)
    except (MapError, MapRetry):
        return out  # the table itself is reported by the table checks
    if not table.enabled:
        return out
    names: list[str] = []
    try:
        for d in table.maps:
            names += [k for k, _ in d.items()]
    except MapError:
        return out  # a table type that cannot list its keys: checked at use
    owner = _uid_of(cfg.get("mail_owner"))
    for name in names:
        try:
            key = table.key(name)
        except MapRetry:
            return out
        except DkimError as exc:
            out.append(("dkim_key_table", f"key {name}: {exc}", False))
            continue
        st = os.stat(key.path)
        if owner is not None and os.geteuid() == 0 and st.st_uid != owner:
            out.append(
                (
                    "dkim_key_table",
                    f"key {name}: {key.path} is not owned by mail_owner, who cannot read it",
                    False,
                )
            )
    try:
        signing = Maps.from_param(cfg, "dkim_signing_table")
        listed = [v for d in signing for _, v in d.items()]
    except (MapError, MapRetry):
        return out
    for value in listed:
        for name in (n.strip() for n in value.split(",")):
            if name and name not in names:
                out.append(
                    ("dkim_signing_table", f"names key {name!r}, not in dkim_key_table", False)
                )
    return out


def _uid_of(user: str) -> int | None:
    import pwd

    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        return None


@dataclass(frozen=True)
class SigningSettings:
    """main.cf's DKIM signature settings, read once per process."""

    canon: str
    headers: tuple[str, ...]
    oversign: tuple[str, ...]
    expire: int

    @classmethod
    def from_config(cls, cfg) -> SigningSettings:
        return cls(
            cfg.get("dkim_canonicalization").strip() or "relaxed/relaxed",
            tuple(cfg.get_list("dkim_signed_headers")),
            tuple(cfg.get_list("dkim_oversign_headers")),
            int(cfg.get_time("dkim_signature_expiry")),
        )

    def signer(self, keys: list[DkimKey]) -> Signer:
        """A Signer for keys; DkimError for a canonicalization that is not one."""
        return Signer(keys, self.canon, list(self.headers), list(self.oversign), self.expire)


_resigning: dict[int, tuple] = {}  # id(cfg) -> (cfg, settings, table); cfg held: ids stay unique


def resign_for(cfg, data: bytes, names: list[str]) -> bytes:
    """resign() with the settings and key table of cfg, made once per process."""
    found = _resigning.get(id(cfg))
    if found is None:
        found = _resigning[id(cfg)] = (cfg, SigningSettings.from_config(cfg), KeyTable(cfg))
    return resign(found[1], found[2], data, names)


def resign(settings: SigningSettings, table: KeyTable, data: bytes, names: list[str]) -> bytes:
    """data with its top len(names) DKIM-Signature fields made again; see the docstring."""
    head, sep, body = data.partition(b"\r\n\r\n")
    fields = header_fields(head)
    ours = 0
    while ours < len(names) and ours < len(fields):
        if fields[ours].partition(b":")[0].strip().lower() != b"dkim-signature":
            break
        ours += 1
    if ours != len(names):
        raise DkimError("the message lost the signatures cleanup made")
    signer = settings.signer(table.keys(names))
    signer.body_text(body)
    rest = fields[ours:]
    new = signer.sign(rest)
    return b"\r\n".join(new + rest) + (sep or b"\r\n\r\n") + body
