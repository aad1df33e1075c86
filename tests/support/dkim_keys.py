"""dkim_keys - DKIM signing keys for tests, with their key table and DNS records

SYNOPSIS
    from tests.support.dkim_keys import write_keys
    records, keytable = write_keys(tmp_path, [("rsa1", "rsa"), ("ed1", "ed25519")])
    records["rsa1"]        # "v=DKIM1; k=rsa; p=..." (the TXT at rsa1._domainkey.DOMAIN)
    keytable               # tmp_path/"keytable": "rsa1 example.org:rsa1:/.../rsa1.pem" ...

DESCRIPTION
    Each key is new (2048-bit RSA or Ed25519), written as PEM with mode
    0600 to DIR/NAME.pem; its selector is its name. The key table is in
    OpenDKIM's KeyTable form, for texthash: (dkim_key_table).

SECURITY
    Throw-away keys in a test's directory.
"""

from __future__ import annotations

import os
from pathlib import Path

from mta.common.dkim import dns_record, generate_key, private_pem


def write_keys(
    directory: Path, specs: list[tuple[str, str]], domain: str = "example.org"
) -> tuple[dict[str, str], Path]:
    records: dict[str, str] = {}
    lines = []
    for name, kind in specs:
        key = generate_key(kind, 2048)
        path = directory / f"{name}.pem"
        path.write_bytes(private_pem(key))
        os.chmod(path, 0o600)
        records[name] = dns_record(key)
        lines.append(f"{name} {domain}:{name}:{path}")
    table = directory / "keytable"
    table.write_text("\n".join(lines) + "\n")
    return records, table
