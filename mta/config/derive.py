"""config.derive - defaults that depend on this host

SYNOPSIS
    from mta.config.derive import derive_default
    derive_default("myhostname", get)       # "vm.localdomain"

DESCRIPTION
    myhostname is the host's name, with ".localdomain" added when it has
    no dot; mydomain is myhostname without its first label; mail_owner is
    "mta" when that account exists, else "postfix", else the account
    running this process; mynetworks follows mynetworks_style: "host"
    lists loopback and this host's own addresses, "subnet" the networks
    of its interfaces, "class" their class A/B/C networks. Interface
    addresses come from /proc on Linux; loopback alone elsewhere.

SECURITY
    Reads /proc/net files; sees no untrusted input.
"""

from __future__ import annotations

import ipaddress
import os
import pwd
import socket
from collections.abc import Callable


def _hostname() -> str:
    name = socket.gethostname().strip().lower() or "localhost"
    if "." not in name:
        fqdn = socket.getfqdn(name).lower()
        name = fqdn if "." in fqdn and not fqdn.startswith("localhost") else name + ".localdomain"
    return name


def _ipv4_networks() -> list[ipaddress.IPv4Interface]:
    """Local IPv4 addresses with their prefix, from /proc/net/route and fib_trie."""
    out: list[ipaddress.IPv4Interface] = []
    try:
        with open("/proc/net/fib_trie") as f:
            lines = f.read().splitlines()
    except OSError:
        return [ipaddress.IPv4Interface("127.0.0.1/8")]
    routes: list[ipaddress.IPv4Network] = []
    try:
        with open("/proc/net/route") as f:
            for line in f.read().splitlines()[1:]:
                fields = line.split()
                dest = ipaddress.IPv4Address(bytes.fromhex(fields[1])[::-1])
                mask = ipaddress.IPv4Address(bytes.fromhex(fields[7])[::-1])
                if int(mask):
                    routes.append(ipaddress.IPv4Network(f"{dest}/{mask}", strict=False))
    except (OSError, ValueError, IndexError):
        pass
    seen: set[str] = set()
    for i, line in enumerate(lines):
        if "/32 host LOCAL" in line and i > 0:
            addr = lines[i - 1].split()[-1]
            if addr in seen:
                continue
            seen.add(addr)
            ip = ipaddress.IPv4Address(addr)
            prefix = 8 if ip.is_loopback else 32
            for net in routes:
                if ip in net and net.prefixlen < prefix:
                    prefix = net.prefixlen
            out.append(ipaddress.IPv4Interface(f"{ip}/{prefix}"))
    return out or [ipaddress.IPv4Interface("127.0.0.1/8")]


def _ipv6_networks() -> list[ipaddress.IPv6Interface]:
    out: list[ipaddress.IPv6Interface] = []
    try:
        with open("/proc/net/if_inet6") as f:
            for line in f:
                fields = line.split()
                raw = fields[0]
                addr = ":".join(raw[i : i + 4] for i in range(0, 32, 4))
                out.append(ipaddress.IPv6Interface(f"{addr}/{int(fields[2], 16)}"))
    except (OSError, ValueError, IndexError):
        pass
    return out


def _fmt(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
    return f"[{net.network_address}]/{net.prefixlen}" if net.version == 6 else str(net)


def _mynetworks(style: str) -> str:
    nets: list[str] = []
    style = style.strip().lower()
    for iface in [*_ipv4_networks(), *_ipv6_networks()]:
        if iface.ip.is_loopback:
            net = iface.network
        elif style == "subnet":
            net = iface.network
        elif style == "class" and iface.version == 4:
            first = int(str(iface.ip).split(".")[0])
            prefix = 8 if first < 128 else 16 if first < 192 else 24
            net = ipaddress.ip_network(f"{iface.ip}/{prefix}", strict=False)
        elif style == "class":
            net = iface.network
        else:
            net = ipaddress.ip_network(f"{iface.ip}/{iface.max_prefixlen}")
        text = _fmt(net)
        if text not in nets:
            nets.append(text)
    return " ".join(nets)


def _mail_owner() -> str:
    for name in ("mta", "postfix"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            pass
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


def derive_default(name: str, get: Callable[[str], str]) -> str:
    """Compute the host-dependent default of name; get() expands others."""
    if name == "myhostname":
        return _hostname()
    if name == "mydomain":
        host = get("myhostname")
        return host.split(".", 1)[1] if "." in host else "localdomain"
    if name == "mynetworks":
        return _mynetworks(get("mynetworks_style") or "host")
    if name == "mail_owner":
        return _mail_owner()
    raise KeyError(name)
