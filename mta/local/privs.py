"""local.privs - delivery outcomes, and running a step with a user's privileges

SYNOPSIS
    from mta.local.privs import Outcome, Privs, run_as, privileged
    result = run_as(Privs(uid, gid, "alice"), deliver_fn, arg1, arg2)   # -> Outcome

DESCRIPTION
    Outcome is what every delivery step returns: status "sent",
    "defer" or "bounce", an enhanced status code and the reason.

    privileged(cfg) is true when the agent runs as root for a
    privilege-separated instance (mail_owner is not root): deliveries
    to home directories, files and commands then run with the
    recipient's uid and gid (or default_privs). An instance whose
    mail_owner is the invoking user (the embedded instance, tests)
    delivers everything as that user.

    run_as() calls fn(*args) in a forked child that has dropped to the
    given uid and gid (no supplementary groups) and brings its return
    value back through a pipe; the agent process itself never changes
    its own ids. When no change is needed fn runs in this process. A
    child that dies without an answer gives a deferral.

SECURITY
    The only place where the local agents change privileges; the child
    drops them for good before touching any user file.
"""

from __future__ import annotations

import json
import os
import pwd
from collections.abc import Callable
from dataclasses import dataclass

OUTCOME_SENT = "sent"  # delivered
OUTCOME_DEFER = "defer"  # temporary failure
OUTCOME_BOUNCE = "bounce"  # permanent failure


@dataclass
class Outcome:
    status: str
    dsn: str
    reason: str

    @property
    def ok(self) -> bool:
        return self.status == OUTCOME_SENT


def sent(reason: str, dsn: str = "2.0.0") -> Outcome:
    return Outcome(OUTCOME_SENT, dsn, reason)


def defer(reason: str, dsn: str = "4.3.0") -> Outcome:
    return Outcome(OUTCOME_DEFER, dsn, reason)


def bounce(reason: str, dsn: str = "5.0.0") -> Outcome:
    return Outcome(OUTCOME_BOUNCE, dsn, reason)


@dataclass(frozen=True)
class Privs:
    uid: int
    gid: int
    name: str = ""


def privileged(cfg) -> bool:
    """Root, for an instance whose mail_owner is an unprivileged account."""
    if os.geteuid() != 0:
        return False
    try:
        return pwd.getpwnam(cfg.get("mail_owner")).pw_uid != 0
    except KeyError:
        return True


def default_privs(cfg) -> Privs:
    """The default_privs account (for deliveries without a user context)."""
    name = cfg.get("default_privs") or "nobody"
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        return Privs(65534, 65534, name)
    return Privs(pw.pw_uid, pw.pw_gid, name)


def run_as(privs: Privs | None, fn: Callable[..., Outcome], *args) -> Outcome:
    """fn(*args) with privs (None or our own ids: in this process)."""
    if privs is None or (privs.uid == os.geteuid() and privs.gid == os.getegid()):
        return fn(*args)
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 0
        try:
            os.close(rfd)
            os.setgroups([])
            os.setgid(privs.gid)
            os.setuid(privs.uid)
            try:
                result = fn(*args)
            except Exception as exc:  # noqa: BLE001 - reported to the parent
                result = defer(f"delivery helper error: {type(exc).__name__}: {exc}")
            data = _encode(result)
            view = memoryview(data)
            while view:
                view = view[os.write(wfd, view) :]
        except BaseException:  # noqa: BLE001 - never return into the parent's code
            code = 1
        finally:
            os._exit(code)
    os.close(wfd)
    chunks = []
    with os.fdopen(rfd, "rb") as fh:
        while True:
            chunk = fh.read(65536)
            if not chunk:
                break
            chunks.append(chunk)
    os.waitpid(pid, 0)
    if not chunks:
        return defer(f"delivery helper for uid {privs.uid} died")
    try:
        return _decode(b"".join(chunks))
    except (ValueError, TypeError, KeyError):
        return defer(f"delivery helper for uid {privs.uid} sent a bad answer")


# The child runs as the recipient, who could tamper with it: its answer is
# plain JSON (never pickle) and decodes only to Outcome, None, str, numbers,
# booleans and lists of those.
def _encode(value) -> bytes:
    def enc(v):
        if isinstance(v, Outcome):
            return {"o": [v.status, v.dsn, v.reason]}
        if isinstance(v, (tuple, list)):
            return {"l": [enc(x) for x in v]}
        if v is None or isinstance(v, (str, int, float, bool)):
            return {"v": v}
        raise TypeError(f"cannot return a {type(v).__name__} from a delivery helper")

    return json.dumps(enc(value)).encode("utf-8", "surrogatepass")


def _decode(data: bytes):
    def dec(d):
        if not isinstance(d, dict) or len(d) != 1:
            raise ValueError("bad answer")
        ((kind, v),) = d.items()
        if kind == "o":
            status, dsn, reason = v
            if status not in (OUTCOME_SENT, OUTCOME_DEFER, OUTCOME_BOUNCE):
                raise ValueError("bad outcome")
            return Outcome(str(status), str(dsn), str(reason))
        if kind == "l":
            return tuple(dec(x) for x in v)
        if kind == "v" and (v is None or isinstance(v, (str, int, float, bool))):
            return v
        raise ValueError("bad answer")

    return dec(json.loads(data.decode("utf-8", "surrogatepass")))
