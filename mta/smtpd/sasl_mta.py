"""smtpd.sasl_mta - the built-in SASL backend: users and password hashes in a table

SYNOPSIS
    from mta.smtpd.sasl_mta import MtaBackend, hash_password, verify_password
    backend = MtaBackend(cfg)                   # smtpd_sasl_type = mta
    conv = backend.start("PLAIN", secured=True) # a Conversation (smtpd.sasl)
    stored = hash_password("secret")            # "scrypt$16384$8$1$SALT$HASH"
    verify_password("secret", stored)           # True

DESCRIPTION
    smtpd_sasl_type = mta checks passwords against a lookup table named
    by smtpd_sasl_path: "lmdb:/etc/mta/sasl_users", or a bare name,
    which means lmdb:NAME in config_directory (the default "smtpd" is
    config_directory/smtpd.lmdb). Keys are the login names (folded to
    lower case, as table keys are); values are password hashes, written
    by "mta sasl add" (mta/cli/sasl.py):

        scrypt$N$r$p$SALT$HASH           hashlib.scrypt, the default
        pbkdf2_sha256$ITERATIONS$SALT$HASH

    SALT and HASH are unpadded base64; the parameters travel with each
    hash, so stronger ones apply to new passwords without breaking old
    ones. Hashes are compared in constant time, and an unknown user
    costs the same hash as a known one.

    Mechanisms: PLAIN and LOGIN. CRAM-MD5 and the SCRAM family need the
    password itself (or a mechanism-specific derivative) on the server,
    which a table of one-way hashes does not have, so they are not
    offered by this backend (smtpd_sasl_type = dovecot can).

    smtpd_sasl_service names the service to Dovecot; this backend has
    no per-service rules: give a service its own users with
    "-o smtpd_sasl_path=..." in master.cf.

    When smtpd_sasl_local_domain is set, a login name without "@" is
    looked up, and authenticated, as NAME@smtpd_sasl_local_domain.

SECURITY
    Sees untrusted login names and passwords; the password is only
    hashed, never logged or kept. Hashing runs on a worker thread so a
    login does not stall the other sessions.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os

from mta.maps import MapError, MapRetry, open_map

SCRYPT_N = 1 << 14  # scrypt cost of new hashes (16 MiB of memory with r=8)
SCRYPT_R = 8
SCRYPT_P = 1
PBKDF2_ITERATIONS = 600_000  # PBKDF2-SHA256 rounds of new hashes (OWASP 2023)
SALT_BYTES = 16
HASH_BYTES = 32
SCRYPT_MAXMEM = 64 * 1024 * 1024  # refuse a stored hash that asks for more
HASH_SCHEMES = ("scrypt", "pbkdf2_sha256")
DEFAULT_TABLE_TYPE = "lmdb"  # the type of a smtpd_sasl_path without one
_DUMMY = None  # a hash of nothing, verified for unknown users


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def hash_password(password: str, scheme: str = "scrypt") -> str:
    """A new salted hash of password in the stored form (see the module docstring)."""
    salt = os.urandom(SALT_BYTES)
    secret = password.encode("utf-8")
    if scheme == "scrypt":
        digest = hashlib.scrypt(
            secret, salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P,
            maxmem=SCRYPT_MAXMEM, dklen=HASH_BYTES,
        )  # fmt: skip
        return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"
    if scheme == "pbkdf2_sha256":
        digest = hashlib.pbkdf2_hmac("sha256", secret, salt, PBKDF2_ITERATIONS, HASH_BYTES)
        return f"pbkdf2_sha256${PBKDF2_ITERATIONS}${_b64(salt)}${_b64(digest)}"
    raise ValueError(f"unknown password hash scheme: {scheme}")


def verify_password(password: str, stored: str) -> bool:
    """Whether password matches the stored hash; False for a malformed one."""
    parts = stored.strip().split("$")
    secret = password.encode("utf-8")
    try:
        if parts[0] == "scrypt" and len(parts) == 6:
            n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
            salt, want = _unb64(parts[4]), _unb64(parts[5])
            got = hashlib.scrypt(secret, salt=salt, n=n, r=r, p=p, maxmem=SCRYPT_MAXMEM,
                                 dklen=len(want))  # fmt: skip
        elif parts[0] == "pbkdf2_sha256" and len(parts) == 4:
            rounds, salt, want = int(parts[1]), _unb64(parts[2]), _unb64(parts[3])
            got = hashlib.pbkdf2_hmac("sha256", secret, salt, rounds, len(want))
        else:
            return False
    except (ValueError, MemoryError):
        return False
    return hmac.compare_digest(got, want)


def valid_hash(stored: str) -> bool:
    """Whether stored has the form of a hash this backend can check."""
    parts = stored.strip().split("$")
    try:
        if parts[0] == "scrypt" and len(parts) == 6:
            int(parts[1]), int(parts[2]), int(parts[3])
            _unb64(parts[4]), _unb64(parts[5])
            return True
        if parts[0] == "pbkdf2_sha256" and len(parts) == 4:
            int(parts[1]), _unb64(parts[2]), _unb64(parts[3])
            return True
    except ValueError:
        pass
    return False


def users_table_spec(cfg) -> str:
    """smtpd_sasl_path as a table spec: a bare name is lmdb: in config_directory."""
    path = cfg.get("smtpd_sasl_path").strip()
    if ":" in path:
        return path
    if not os.path.isabs(path):
        path = os.path.join(cfg.get("config_directory"), path)
    return f"{DEFAULT_TABLE_TYPE}:{path}"


def login_name(cfg_local_domain: str, name: str) -> str:
    """The login name as authenticated: NAME@smtpd_sasl_local_domain when it has no @."""
    if cfg_local_domain and "@" not in name:
        return f"{name}@{cfg_local_domain}"
    return name


class MtaBackend:
    """smtpd_sasl_type = mta; see the module docstring."""

    MECHANISMS = {"PLAIN": frozenset({"plaintext"}), "LOGIN": frozenset({"plaintext"})}

    def __init__(self, cfg) -> None:
        self.cfg = cfg
        self.spec = users_table_spec(cfg)
        self.local_domain = cfg.get("smtpd_sasl_local_domain").strip()
        self._table = None

    def problems(self) -> list[tuple[str, str]]:
        """Why the users table cannot be read now: [(param, text)]."""
        try:
            self.table()
        except MapError as exc:
            return [("smtpd_sasl_path", str(exc))]
        return []

    def table(self):
        if self._table is None:
            self._table = open_map(self.spec, self.cfg)
        return self._table

    async def mechanisms(self) -> dict[str, frozenset[str]]:
        return dict(self.MECHANISMS)

    def start(self, mech: str, session_info: dict):
        from mta.smtpd.sasl import PasswordConversation

        return PasswordConversation(mech, self.check)

    async def check(self, user: str, password: str) -> tuple[str, str]:
        """("ok", login) or ("fail", reason) or ("temp", reason)."""
        name = login_name(self.local_domain, user)
        try:
            stored = self.table().lookup(name)
        except (MapError, MapRetry) as exc:
            return "temp", f"user table lookup problem: {exc}"
        loop = asyncio.get_running_loop()
        ok = await loop.run_in_executor(None, _check, password, stored)
        return ("ok", name) if ok else ("fail", "authentication failure")


def _check(password: str, stored: str | None) -> bool:
    global _DUMMY
    if stored is None:
        if _DUMMY is None:
            _DUMMY = hash_password("")
        verify_password(password + "x", _DUMMY)  # the same cost as a real check
        return False
    return verify_password(password, stored)
