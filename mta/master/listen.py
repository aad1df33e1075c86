"""master.listen - open the listeners of master.cf services

SYNOPSIS
    from mta.master.listen import listen_key, open_listeners, choose_inet_addresses
    key = listen_key(entry, cfg)            # what identifies the listener
    socks = open_listeners(entry, cfg, key, owner)
    choose_inet_addresses("", ["loopback-only"], ["all"])   # [(AF_INET, "127.0.0.1"), ...]

DESCRIPTION
    The master opens every listener itself and hands it to its
    children, so that a child that dies loses no connection and a reload
    refuses none.

    inet services listen on the host in the service name when there is
    one ("127.0.0.1:2525", "[::1]:2525", "localhost:2525"), otherwise on
    every address of inet_interfaces: "all" is the wildcard address of
    each protocol, "loopback-only" is 127.0.0.1 and ::1, anything else a
    list of addresses or host names. inet_protocols ("all", "ipv4",
    "ipv6") picks the families; "all" leaves out IPv6 when the host
    cannot use it. An IPv6 socket is IPv6-only, so "::" and "0.0.0.0"
    coexist as in Postfix.

    unix services listen on queue_directory/private/NAME when private,
    else public/NAME (mode 0600 or 0666); fifo services on a named pipe
    at the same place, opened read-write so it never reports end of
    file. Both belong to mail_owner when the master runs as root. pass
    services (the smtpd behind postscreen) listen on a UNIX socket at
    the same place; their children receive client connections on it as
    descriptors (smtpd/pass_accept.py). Every
    listener is non-blocking and close-on-exec; spawn.py places it at
    the child's descriptor 3.

    listen_key() is the identity of a listener: a reloaded service whose
    key has not changed keeps its open sockets.

SECURITY
    Runs in the master, possibly as root. Removes a stale socket or
    fifo at the service's path before creating it; the path lies under
    queue_directory, which only root and mail_owner may write.
"""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Callable

from mta.config.errors import ConfigError
from mta.config.master_cf import ServiceEntry
from mta.master.privs import User, running_as_root
from mta.queue import paths

LISTEN_BACKLOG_MIN = 128  # smallest listen(2) backlog the master asks for
LISTEN_TYPES = ("inet", "unix", "fifo", "pass")  # master.cf service types the master can run

Resolver = Callable[[str, int], list[tuple[int, str]]]


def ipv6_usable() -> bool:
    """True when this host can bind an IPv6 socket."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def inet_families(protocols: list[str], ipv6_ok: bool = True) -> list[int]:
    """Return the address families inet_protocols enables, IPv4 first."""
    names = {p.lower() for p in protocols}
    if not names or "all" in names:
        names = {"ipv4", "ipv6"} if ipv6_ok else {"ipv4"}
    unknown = names - {"ipv4", "ipv6"}
    if unknown:
        raise ValueError(f"bad inet_protocols value: {sorted(unknown)[0]}")
    out = []
    if "ipv4" in names:
        out.append(socket.AF_INET)
    if "ipv6" in names:
        out.append(socket.AF_INET6)
    return out


def _literal_family(host: str) -> int | None:
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
            return family
        except OSError:
            pass
    return None


def _resolve(host: str, family: int) -> list[tuple[int, str]]:
    try:
        infos = socket.getaddrinfo(host, None, family, socket.SOCK_STREAM)
    except socket.gaierror:
        return []
    return [(info[0], info[4][0]) for info in infos]


def _addresses_of(host: str, families: list[int], resolver: Resolver) -> list[tuple[int, str]]:
    host = host.strip("[]")
    family = _literal_family(host)
    if family is not None:
        return [(family, host)]
    out: list[tuple[int, str]] = []
    for fam in families:
        for item in resolver(host, fam):
            if item not in out:
                out.append(item)
    if not out:
        raise ValueError(f"host not found: {host}")
    return out


def choose_inet_addresses(
    service_host: str,
    interfaces: list[str],
    protocols: list[str],
    ipv6_ok: bool = True,
    resolver: Resolver = _resolve,
) -> list[tuple[int, str]]:
    """Return [(family, address)] an inet service listens on."""
    families = inet_families(protocols, ipv6_ok)
    if service_host:
        return _addresses_of(service_host, families, resolver)
    names = [i.lower() for i in interfaces] or ["all"]
    out: list[tuple[int, str]] = []
    for name in names:
        if name == "all":
            wild = {socket.AF_INET: "0.0.0.0", socket.AF_INET6: "::"}
            items = [(f, wild[f]) for f in families]
        elif name in ("loopback-only", "localhost"):
            loop = {socket.AF_INET: "127.0.0.1", socket.AF_INET6: "::1"}
            items = [(f, loop[f]) for f in families]
        else:
            items = _addresses_of(name, families, resolver)
        for item in items:
            if item not in out:
                out.append(item)
    return out


def service_port(name: str) -> int:
    """Return the port number of "25" or "smtp"."""
    if name.isdigit():
        return int(name)
    try:
        return socket.getservbyname(name, "tcp")
    except OSError:
        raise ValueError(f"unknown service port: {name}") from None


def listen_key(entry: ServiceEntry, cfg) -> tuple:
    """Return what identifies this service's listener across a reload."""
    where = (entry.path, entry.line)
    if entry.type == "inet":
        host, port = entry.listen_address()
        try:
            number = service_port(port)
            addrs = choose_inet_addresses(
                host,
                cfg.get_list("inet_interfaces"),
                cfg.get_list("inet_protocols"),
                ipv6_ok=ipv6_usable(),
            )
        except ValueError as exc:
            raise ConfigError(f"service {entry.key}: {exc}", path=where[0], line=where[1]) from None
        return ("inet", tuple(addrs), number)
    if entry.type in ("unix", "fifo", "pass"):
        path = paths.service_socket_path(cfg.get("queue_directory"), entry.name, entry.private)
        return (entry.type, path, entry.private)
    raise ConfigError(
        f"service {entry.key}: type {entry.type} is not supported", path=where[0], line=where[1]
    )


def _remove_stale(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISSOCK(st.st_mode) or stat.S_ISFIFO(st.st_mode):
        os.unlink(path)
    else:
        raise OSError(f"{path} exists and is not a socket or fifo")


def _chown(path: str, owner: User | None) -> None:
    if owner is not None and running_as_root():
        os.chown(path, owner.uid, owner.gid)


def open_listeners(key: tuple, backlog: int, owner: User | None) -> list[socket.socket | int]:
    """Open the listeners for a key from listen_key(); return sockets or a fifo fd."""
    kind = key[0]
    backlog = max(backlog, LISTEN_BACKLOG_MIN)
    if kind == "inet":
        _, addrs, port = key
        socks: list[socket.socket | int] = []
        try:
            for family, addr in addrs:
                s = socket.socket(family, socket.SOCK_STREAM)
                socks.append(s)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                try:
                    s.bind((addr, port))
                except OSError as exc:
                    raise OSError(exc.errno, f"bind {addr} port {port}: {exc.strerror}") from None
                s.listen(backlog)
                s.setblocking(False)
        except OSError:
            for s in socks:
                s.close()  # type: ignore[union-attr]
            raise
        return socks
    _, path, private = key
    _remove_stale(path)
    if kind in ("unix", "pass"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.bind(path)
            os.chmod(path, paths.SOCKET_MODE_PRIVATE if private else paths.SOCKET_MODE_PUBLIC)
            _chown(path, owner)
            s.listen(backlog)
            s.setblocking(False)
        except OSError as exc:
            s.close()
            raise OSError(exc.errno, f"bind {path}: {exc.strerror}") from None
        return [s]
    os.mkfifo(path, 0o600)
    os.chmod(path, paths.FIFO_MODE_PRIVATE if private else paths.FIFO_MODE_PUBLIC)
    _chown(path, owner)
    fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    return [fd]


def close_listeners(listeners: list[socket.socket | int]) -> None:
    for item in listeners:
        if isinstance(item, int):
            os.close(item)
        else:
            item.close()


def listener_fd(item: socket.socket | int) -> int:
    return item if isinstance(item, int) else item.fileno()
