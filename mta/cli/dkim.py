"""cli.dkim - make DKIM signing keys and their DNS records; check signed messages

SYNOPSIS
    mta dkim keygen DOMAIN SELECTOR [--type rsa|ed25519] [--bits N]
                    [--dir DIR | --out FILE] [--json]
    mta dkim check [FILE] [--json]

DESCRIPTION
    keygen makes a new private key (RSA of --bits bits, 2048 by default,
    1024-4096; or Ed25519), writes it as PEM to FILE (default
    DIR/DOMAIN.SELECTOR.pem, DIR the current directory) with mode 0600,
    owned by the instance's mail_owner when root runs it (cleanup reads
    keys as mail_owner), never over an existing file, and prints the TXT record to publish at
    SELECTOR._domainkey.DOMAIN in zone-file form, split into strings of
    at most 255 bytes as DNS needs. With --json it prints one object
    instead: {"domain", "selector", "name", "type", "bits", "key_file",
    "txt"}. The key file goes in the key table (dkim_key_table) as
    DOMAIN:SELECTOR:FILE, OpenDKIM's KeyTable form.

    check reads a message (FILE, or standard input) and checks each of
    its DKIM-Signature fields with the key published in DNS (the name
    servers of MTA_DNS_SERVER or /etc/resolv.conf): one line per
    signature, "pass", "fail", "temperror" or "permerror" with the
    domain, selector and reason, or with --json one JSON object per
    line. The exit status is 0 when there is at least one signature and
    every one passes, 1 otherwise.

SECURITY
    check reads an untrusted message and DNS answers (common/dkim_verify).
    The private key is written to a file created with O_EXCL and mode
    0600, never to the terminal.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import sys

from mta.cli.common import accept_options_after, fatal, load, make_parser
from mta.common import dns as mta_dns
from mta.common.dkim import DkimError, dns_record, generate_key, private_pem
from mta.common.dkim_verify import verify_message
from mta.config.errors import ConfigError

TXT_CHUNK = 255  # the longest string a TXT record holds


def zone_line(name: str, txt: str) -> str:
    """The record in zone-file form, its text in strings of at most 255 bytes."""
    parts = [txt[i : i + TXT_CHUNK] for i in range(0, len(txt), TXT_CHUNK)]
    quoted = "\n\t".join(f'"{p}"' for p in parts)
    return f"{name}.\tIN\tTXT\t( {quoted} )"


def _mail_owner(args) -> tuple[int, int] | None:
    """(uid, gid) of the instance's mail_owner, for a key made by root; None if unknown."""
    try:
        name = load(args).get("mail_owner")
        entry = pwd.getpwnam(name)
    except (ConfigError, KeyError):
        return None
    return entry.pw_uid, entry.pw_gid


def keygen(args) -> int:
    domain = args.domain.lower().rstrip(".")
    if not domain or "/" in domain or not args.selector or "/" in args.selector:
        return fatal("dkim", "DOMAIN and SELECTOR must be names, not paths")
    path = args.out or os.path.join(args.dir, f"{domain}.{args.selector}.pem")
    try:
        key = generate_key(args.type, args.bits)
    except DkimError as exc:
        return fatal("dkim", str(exc))
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        return fatal("dkim", f"{path}: {exc.strerror}")
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        owner = _mail_owner(args) if os.geteuid() == 0 else None
        if owner is not None:
            os.fchown(fd, owner[0], owner[1])  # cleanup reads it as mail_owner
        os.write(fd, private_pem(key))
        os.fsync(fd)
    finally:
        os.close(fd)
    txt = dns_record(key)
    name = f"{args.selector}._domainkey.{domain}"
    if args.json:
        bits = args.bits if args.type == "rsa" else 256
        row = {
            "domain": domain,
            "selector": args.selector,
            "name": name,
            "type": args.type,
            "bits": bits,
            "key_file": os.path.abspath(path),
            "txt": txt,
        }
        print(json.dumps(row))
    else:
        print(zone_line(name, txt))
        sys.stderr.write(f"mta dkim: private key written to {path}\n")
    return 0


def _txt(name: str) -> tuple[str, list[str]]:
    answer = asyncio.run(mta_dns.lookup_txt(name))
    return answer.status, list(answer.records)


def check(args) -> int:
    try:
        if args.file in (None, "-"):
            message = sys.stdin.buffer.read()
        else:
            with open(args.file, "rb") as f:
                message = f.read()
    except OSError as exc:
        return fatal("dkim", f"{args.file}: {exc.strerror}")
    results = verify_message(message, _txt)
    for r in results:
        if args.json:
            print(json.dumps(r.as_dict()))
        else:
            why = f" ({r.reason})" if r.reason else ""
            print(f"{r.result}: d={r.domain} s={r.selector} a={r.algorithm}{why}")
    if not results and not args.json:
        print("none: the message has no DKIM-Signature")
    return 0 if results and all(r.result == "pass" for r in results) else 1


def main(argv: list[str], command: str = "dkim") -> int:
    parser = make_parser(command, "Make DKIM signing keys and their DNS records.")
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    gen = sub.add_parser("keygen", help="make a key; print its TXT record")
    gen.add_argument("domain", metavar="DOMAIN")
    gen.add_argument("selector", metavar="SELECTOR")
    gen.add_argument("--type", choices=("rsa", "ed25519"), default="rsa")
    gen.add_argument("--bits", type=int, default=2048, help="RSA key size (1024-4096)")
    where = gen.add_mutually_exclusive_group()
    where.add_argument("--dir", default=".", help="directory for DOMAIN.SELECTOR.pem")
    where.add_argument("--out", help="the key file to write")
    gen.add_argument("--json", action="store_true", help="one JSON object on stdout")
    chk = sub.add_parser("check", help="check a message's DKIM signatures")
    chk.add_argument("file", metavar="FILE", nargs="?", help="the message (default: stdin)")
    chk.add_argument("--json", action="store_true", help="one JSON object per signature")
    accept_options_after([gen, chk])
    args = parser.parse_args(argv)
    if args.action == "keygen":
        return keygen(args)
    if args.action == "check":
        return check(args)
    return fatal(command, f"unknown action {args.action}")
