"""config.master_cf - read master.cf in Postfix syntax

SYNOPSIS
    from mta.config.master_cf import read_master_cf
    for svc in read_master_cf("/etc/mta/master.cf", default_maxproc=100):
        svc.name, svc.type, svc.maxproc, svc.command, svc.overrides

DESCRIPTION
    One service per logical line: service type private unpriv chroot
    wakeup maxproc command [args...]. "-" means the default (private y,
    unpriv y, chroot n, wakeup 0, maxproc $default_process_limit). A
    wakeup ending in "?" fires only after the service was used. maxproc 0
    means no limit. A physical line starting with whitespace continues
    the previous one; "#" lines are comments. "-o name=value" and
    "-o { name = value with spaces }" become per-service parameter
    overrides. An inet service name is [host:]port ("127.0.0.1:2525",
    "[::1]:2525", "smtp"). The pair (name, type) must be unique.

SECURITY
    Reads the administrator's file; never runs anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mta.config.errors import ConfigError
from mta.config.main_cf import NAME_RE

SERVICE_TYPES = ("inet", "unix", "unix-dgram", "fifo", "pass")


@dataclass
class ServiceEntry:
    name: str
    type: str
    private: bool
    unpriv: bool
    chroot: bool
    wakeup: int  # seconds; 0 = never
    wakeup_used_only: bool  # "60?": wake only after the service was used
    maxproc: int  # 0 = unlimited
    command: str
    args: list[str] = field(default_factory=list)
    overrides: dict[str, str] = field(default_factory=dict)
    path: str = "master.cf"
    line: int = 0
    maxproc_default: bool = False  # "-" was written; follows default_process_limit
    fields: tuple[str, ...] = ()  # the seven columns before the command, as written

    @property
    def key(self) -> str:
        """The postconf -M name: service/type."""
        return f"{self.name}/{self.type}"

    def listen_address(self) -> tuple[str, str]:
        """For inet services: (host, port); host "" means inet_interfaces."""
        return split_inet_name(self.name)


def split_inet_name(name: str) -> tuple[str, str]:
    """Split "[host:]port" (host may be "[v6addr]") into (host, port)."""
    if name.startswith("["):
        host, _, rest = name[1:].partition("]")
        return host, rest.lstrip(":")
    if name.count(":") == 1:
        host, port = name.split(":")
        return host, port
    return "", name


def _logical(lines: list[str]):
    cur: list[str] = []
    first = 0
    for num, raw in enumerate(lines, 1):
        text = raw.rstrip("\r\n")
        stripped = text.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if text[0] in " \t" and cur:
            cur.append(stripped)
            continue
        if cur:
            yield first, " ".join(cur)
        cur, first = [stripped], num
    if cur:
        yield first, " ".join(cur)


def _tokens(text: str, path: str, line: int) -> list[str]:
    """Split on whitespace; "{ ... }" is one token with its braces removed."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        if text[i] == "{":
            depth, j = 1, i + 1
            while j < n and depth:
                depth += {"{": 1, "}": -1}.get(text[j], 0)
                j += 1
            if depth:
                raise ConfigError('missing "}"', path=path, line=line)
            out.append("{" + text[i + 1 : j - 1].strip() + "}")
            i = j
            continue
        j = i
        while j < n and not text[j].isspace():
            j += 1
        out.append(text[i:j])
        i = j
    return out


def _yn(value: str, default: bool, what: str, path: str, line: int) -> bool:
    if value == "-":
        return default
    if value in ("y", "n"):
        return value == "y"
    raise ConfigError(
        f'field "{what}": bad value "{value}" (expected y, n or -)', path=path, line=line
    )


def parse_master_cf(
    text: str, path: str = "master.cf", default_maxproc: int = 100
) -> list[ServiceEntry]:
    """Parse master.cf text into a list of ServiceEntry, in file order."""
    services: list[ServiceEntry] = []
    seen: dict[str, int] = {}
    for line, logical in _logical(text.splitlines(True)):
        toks = _tokens(logical, path, line)
        if len(toks) < 8:
            raise ConfigError(
                "expected 8 or more fields (service type private unpriv chroot wakeup "
                f"maxproc command), got {len(toks)}",
                path=path,
                line=line,
            )
        name, stype, priv, unpriv, chroot, wakeup, maxproc, command, *rest = toks
        if stype not in SERVICE_TYPES:
            raise ConfigError(
                f'bad service type "{stype}" (expected one of {", ".join(SERVICE_TYPES)})',
                path=path,
                line=line,
            )
        wake_used = wakeup.endswith("?")
        wake_text = wakeup[:-1] if wake_used else wakeup
        if wake_text == "-":
            wake = 0
        elif wake_text.isdigit():
            wake = int(wake_text)
        else:
            raise ConfigError(f'field "wakeup": bad value "{wakeup}"', path=path, line=line)
        if maxproc == "-":
            nproc, nproc_default = default_maxproc, True
        elif maxproc.isdigit():
            nproc, nproc_default = int(maxproc), False
        else:
            raise ConfigError(f'field "maxproc": bad value "{maxproc}"', path=path, line=line)
        if stype == "inet":
            host, port = split_inet_name(name)
            if not port:
                raise ConfigError(
                    f'bad inet service name "{name}" (expected [host:]port)', path=path, line=line
                )
        args: list[str] = []
        overrides: dict[str, str] = {}
        i = 0
        while i < len(rest):
            tok = rest[i]
            if tok == "-o" or (tok.startswith("-o") and len(tok) > 2):
                if tok == "-o":
                    if i + 1 >= len(rest):
                        raise ConfigError('"-o" without name=value', path=path, line=line)
                    setting = rest[i + 1]
                    i += 2
                else:
                    setting = tok[2:]
                    i += 1
                if setting.startswith("{") and setting.endswith("}"):
                    setting = setting[1:-1].strip()
                pname, eq, pvalue = setting.partition("=")
                pname = pname.strip()
                if not eq or not NAME_RE.match(pname):
                    raise ConfigError(
                        f'bad "-o" setting "{setting}" (expected name=value)', path=path, line=line
                    )
                overrides[pname] = pvalue.strip()
                continue
            args.append(tok)
            i += 1
        entry = ServiceEntry(
            name=name,
            type=stype,
            private=_yn(priv, True, "private", path, line),
            unpriv=_yn(unpriv, True, "unpriv", path, line),
            chroot=_yn(chroot, False, "chroot", path, line),
            wakeup=wake,
            wakeup_used_only=wake_used,
            maxproc=nproc,
            command=command,
            args=args,
            overrides=overrides,
            path=path,
            line=line,
            maxproc_default=nproc_default,
            fields=(name, stype, priv, unpriv, chroot, wakeup, maxproc),
        )
        if entry.key in seen:
            raise ConfigError(
                f'duplicate service "{entry.key}" (first at line {seen[entry.key]})',
                path=path,
                line=line,
            )
        seen[entry.key] = line
        services.append(entry)
    return services


def read_master_cf(path: str, default_maxproc: int = 100) -> list[ServiceEntry]:
    """Read and parse master.cf; a missing file is an error."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            text = f.read()
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", path=path) from exc
    return parse_master_cf(text, path, default_maxproc)
