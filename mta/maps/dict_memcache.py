"""maps.dict_memcache - memcache: tables, Postfix's memcache_table(5) over memcached's text protocol

SYNOPSIS
    open_map("memcache:/etc/mta/memcache-aliases.cf", cfg)

    # /etc/mta/memcache-aliases.cf
    memcache = inet:127.0.0.1:11211
    key_format = aliases:%s
    backup = lmdb:/etc/mta/aliases-backup

DESCRIPTION
    The name is a configuration file of "name = value" lines (comments
    and continuation lines as in main.cf):

        memcache (inet:localhost:11211)   inet:host:port, inet:[v6]:port
                                          or unix:/path
        key_format (%s)                   the key sent; %s %u %d %S %U %D
                                          %1..%9 as sql_query.py expands
                                          them, without quoting
        domain ()                         only user@domain keys of these
                                          domains (or type:table lookups)
        backup ()                         a type:table asked when memcache
                                          has no answer
        flags (0), ttl (3600)             stored with a value copied from
                                          the backup table
        data_size_limit (10240)           longest value accepted, in bytes
        line_size_limit (1024)            longest reply line, in bytes
        max_try (2), retry_pause (1)      tries of a command, and the
                                          seconds between them
        timeout (2)                       seconds to send a command or to
                                          read its reply

    A lookup sends "get KEY" and reads "VALUE KEY FLAGS BYTES", the
    data, "END" (found) or just "END" (not found). When memcache does
    not have the key and a backup table is configured, the backup is
    asked and a value it has is stored in memcache ("set KEY FLAGS TTL
    BYTES"; a failed store is a warning only). A key that memcached
    cannot take (empty, over 250 bytes, with a space or control
    character) is not found, with a warning. Keys are folded to lower
    case unless the table is opened with fold=False.

    A command that fails (refused or lost connection, timeout, a reply
    that is malformed or over a limit) is tried max_try times,
    retry_pause apart; a refused connection is not retried. After that
    the backup table answers alone, or, without one, the lookup is a
    MapRetry: the mail waits. A configuration file that cannot be read,
    an unknown parameter or a bad value is a MapError naming the file,
    at open.

    Tables are read-only in mta (no map type takes writes, and proxymap
    serves reads only), so memcache is never updated except by the
    backup copy above.

SECURITY
    Keys are untrusted (addresses, domains): they are checked against
    memcached's key syntax before they are sent, so a key can never add
    a command. Replies are read with bounds (line_size_limit,
    data_size_limit). memcache_table(5) warns that such a database is
    writable by whoever can reach the server: do not use it for tables
    that name commands, files or privileges (alias_maps,
    virtual_mailbox_maps, virtual_uid_maps ...).

STANDARDS
    memcached protocol.txt (the text protocol: get, set).

SEE ALSO
    memcache_table(5), MEMCACHE_README; mta/maps/sql_query.py
"""

from __future__ import annotations

import re
import socket
import threading
import time

from mta.maps.maps import Dict, MapError, MapRetry, open_map, register, warn
from mta.maps.sql_query import SqlSettings, expand_query, read_config_file

MC_KEY_LIMIT = 250  # longest key memcached accepts, in bytes
MC_DEFAULTS: dict[str, str] = {  # memcache_table(5) parameters and their defaults
    "memcache": "inet:localhost:11211",
    "backup": "",
    "flags": "0",
    "ttl": "3600",
    "key_format": "%s",
    "domain": "",
    "data_size_limit": "10240",
    "line_size_limit": "1024",
    "max_try": "2",
    "retry_pause": "1",
    "timeout": "2",
}
_NUMERIC = (
    "flags",
    "ttl",
    "data_size_limit",
    "line_size_limit",
    "max_try",
    "retry_pause",
    "timeout",
)
_BAD_KEY_CHAR = re.compile(rb"[\x00-\x20\x7f]")


class ServerRefused(OSError):
    """The server accepts no connection: not worth another try."""


def read_settings(path: str) -> dict[str, str]:
    """The configuration file's values over MC_DEFAULTS; MapError naming the file."""
    values = {**MC_DEFAULTS, **read_config_file(path, MC_DEFAULTS)}
    for name in _NUMERIC:
        if not values[name].isdigit():
            raise MapError(f"{path}: {name} must be a number, not {values[name]!r}")
    if int(values["max_try"]) < 1 or int(values["line_size_limit"]) < 8:
        raise MapError(f"{path}: max_try must be 1 or more, line_size_limit 8 or more")
    try:
        expand_query(values["key_format"], "u@a.b.c.d.e.f.g.h.i", lambda s: s)
    except ValueError as exc:
        raise MapError(f"{path}: key_format: {exc}") from None
    return values


def parse_server(path: str, text: str) -> tuple[int, object]:
    """(address family, address) of inet:host:port, inet:[v6]:port or unix:/path."""
    kind, _, rest = text.partition(":")
    if kind == "unix" and rest:
        return socket.AF_UNIX, rest
    if kind == "inet":
        host, colon, port = rest.rpartition(":")
        if colon and host and port:
            if host.startswith("[") and host.endswith("]"):
                return socket.AF_INET6, (host[1:-1], port)
            if ":" not in host:
                return socket.AF_INET, (host, port)
    raise MapError(f"{path}: memcache = {text}: expected inet:host:port or unix:/path")


def split_domains(text: str) -> list[str]:
    """The domain list: words between commas and spaces, "{ ... }" kept whole."""
    out: list[str] = []
    word, depth = "", 0
    for c in text:
        if depth == 0 and (c == "," or c.isspace()):
            if word:
                out.append(word)
            word = ""
            continue
        depth += (c == "{") - (c == "}" and depth > 0)
        word += c
    if word:
        out.append(word)
    return out


def check_key(key: bytes) -> str:
    """Why memcached cannot take key, or ""."""
    if not key:
        return "empty key"
    if len(key) > MC_KEY_LIMIT:
        return f"key is longer than {MC_KEY_LIMIT} bytes"
    if _BAD_KEY_CHAR.search(key):
        return "key contains a space or a control character"
    return ""


def parse_get_reply(buf: bytes, line_limit: int, data_limit: int):
    """Parse a reply to "get KEY" from the start of buf.

    Returns None while more bytes are needed, else (value or None,
    bytes consumed). ValueError for a malformed reply, an error reply or
    one over a limit."""
    end = buf.find(b"\r\n", 0, line_limit + 2)
    if end < 0:
        if len(buf) >= line_limit + 2:
            raise ValueError(f"reply line longer than {line_limit} bytes")
        return None
    line = buf[:end]
    if line == b"END":
        return None, end + 2
    words = line.split(b" ")
    if words[0] != b"VALUE" or len(words) not in (4, 5):
        raise ValueError(f"unexpected reply {_shown(line)}")
    if not words[2].isdigit() or not words[3].isdigit():
        raise ValueError(f"malformed reply {_shown(line)}")
    size = int(words[3])
    if size > data_limit:
        raise ValueError(f"value of {size} bytes is longer than data_size_limit {data_limit}")
    start = end + 2
    stop = start + size
    if len(buf) < stop + 2 + 5:
        if len(buf) >= stop + 2 and buf[stop : stop + 2] != b"\r\n":
            raise ValueError("value is not followed by CRLF")
        return None
    if buf[stop : stop + 2] != b"\r\n":
        raise ValueError("value is not followed by CRLF")
    if buf[stop + 2 : stop + 7] != b"END\r\n":
        raise ValueError("value is not followed by END")
    return bytes(buf[start:stop]), stop + 7


def _shown(line: bytes) -> str:
    return repr(line[:60].decode("latin-1"))


class MemcacheDict(Dict):
    kind = "memcache"
    fixed = True

    def __init__(self, spec: str, name: str, cfg=None, fold: bool = True) -> None:
        super().__init__(spec, name, fold)
        v = read_settings(name)
        self.family, self.address = parse_server(name, v["memcache"])
        self.key_format = v["key_format"]
        self.flags, self.ttl = int(v["flags"]), int(v["ttl"])
        self.data_limit, self.line_limit = int(v["data_size_limit"]), int(v["line_size_limit"])
        self.max_try, self.retry_pause = int(v["max_try"]), int(v["retry_pause"])
        self.timeout = int(v["timeout"]) or 1
        domains = split_domains(v["domain"])
        tables = [d for d in domains if ":" in d and not d.startswith("/")]
        self.domain_rule = SqlSettings(name, {}, [d.lower() for d in domains if d not in tables])
        self.domain_tables = [open_map(d, cfg) for d in tables]
        self.backup = open_map(v["backup"], cfg, fold=fold) if v["backup"] else None
        self.sock: socket.socket | None = None
        self.lock = threading.Lock()

    # ------------------------------------------------------------ connection
    def _connect(self) -> socket.socket:
        if self.family == socket.AF_UNIX:
            candidates = [(socket.AF_UNIX, self.address)]
        else:
            host, port = self.address
            try:
                infos = socket.getaddrinfo(host, port, self.family, socket.SOCK_STREAM)
            except (socket.gaierror, UnicodeError) as exc:
                raise ServerRefused(f"{host}: {exc}") from None
            candidates = [(fam, addr) for fam, _, _, _, addr in infos]
        problem: OSError = ServerRefused("no address")
        for fam, addr in candidates:
            sock = socket.socket(fam, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            try:
                sock.connect(addr)
                return sock
            except OSError as exc:
                sock.close()
                problem = ServerRefused(exc.strerror or str(exc))
        raise problem

    def _close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def _exchange(self, command: bytes, parse):
        """Send command, return parse(buffer) once it is not None; tries max_try times."""
        problem = ""
        for attempt in range(self.max_try):
            if attempt:
                time.sleep(self.retry_pause)
            try:
                if self.sock is None:
                    self.sock = self._connect()
                self.sock.sendall(command)
                buf = b""
                while True:
                    done = parse(buf)
                    if done is not None:
                        return done
                    chunk = self.sock.recv(65536)
                    if not chunk:
                        raise ConnectionError("connection closed by server")
                    buf += chunk
            except ServerRefused as exc:
                self._close()
                raise MapRetry(f"{self.spec}: connect to memcache {self._where()}: {exc}") from None
            except (OSError, ValueError) as exc:
                self._close()
                problem = str(exc) if not isinstance(exc, TimeoutError) else "timeout"
        raise MapRetry(f"{self.spec}: memcache {self._where()}: {problem}")

    def _where(self) -> str:
        if self.family == socket.AF_UNIX:
            return f"unix:{self.address}"
        return f"inet:{self.address[0]}:{self.address[1]}"

    # ------------------------------------------------------------ commands
    def _get(self, key: bytes) -> bytes | None:
        def parse(buf: bytes):
            done = parse_get_reply(buf, self.line_limit, self.data_limit)
            return None if done is None else (done[0],)

        return self._exchange(b"get " + key + b"\r\n", parse)[0]

    def _set(self, key: bytes, value: bytes) -> None:
        def parse(buf: bytes):
            end = buf.find(b"\r\n", 0, self.line_limit + 2)
            if end < 0:
                if len(buf) >= self.line_limit + 2:
                    raise ValueError("reply line too long")
                return None
            return (buf[:end],)

        if len(value) > self.data_limit:
            return
        head = b"set %s %d %d %d\r\n" % (key, self.flags, self.ttl, len(value))
        try:
            (reply,) = self._exchange(head + value + b"\r\n", parse)
        except MapRetry as exc:
            warn(f"{exc}; value from backup not stored")
            return
        if reply != b"STORED":
            warn(f"{self.spec}: memcache set: {_shown(reply)}; value from backup not stored")

    # ------------------------------------------------------------ lookup
    def _domain_listed(self, domain: str) -> bool:
        return any(t.lookup(domain) is not None for t in self.domain_tables)

    def _memcache_key(self, key: str) -> bytes | None:
        if not self.domain_rule.eligible(key, self._domain_listed):
            return None
        text = expand_query(self.key_format, key, lambda s: s)
        if text is None:
            return None
        raw = text.encode("utf-8", "surrogateescape")
        why = check_key(raw)
        if why:
            warn(f"{self.spec}: {why}: {text[:80]!r}; not looked up")
            return None
        return raw

    def lookup(self, key: str) -> str | None:
        if self.fold:
            key = key.lower()
        mc_key = self._memcache_key(key)
        if mc_key is None:
            return None
        problem: MapRetry | None = None
        with self.lock:
            try:
                value = self._get(mc_key)
            except MapRetry as exc:
                problem, value = exc, None
        if value is not None:
            return value.decode("utf-8", "surrogateescape")
        if self.backup is None:
            if problem is not None:
                raise problem
            return None
        found = self.backup.lookup(key)
        if found is not None and problem is None:
            with self.lock:
                self._set(mc_key, found.encode("utf-8", "surrogateescape"))
        return found

    def close(self) -> None:
        with self.lock:
            self._close()


register("memcache", MemcacheDict)
