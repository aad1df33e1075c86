"""Local delivery pieces against Postfix's own tools: postalias reads the same aliases."""

import shutil
import subprocess

import pytest

from mta.cli import alias as alias_cli
from mta.maps import clear_cache, open_map

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(shutil.which("postalias") is None, reason="postalias not installed"),
]

ALIASES = (
    "# system aliases\n"
    "Postmaster: root\n"
    "team: alice,\n"
    '  bob, "|/usr/bin/prog a, b"\n'
    '"first last": fl\n'
    "list: :include:/etc/mail/list\n"
)


def test_postalias_and_mta_alias_agree(tmp_path):
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "main.cf").write_text("")
    ours = tmp_path / "aliases"
    ours.write_text(ALIASES)
    theirs = tmp_path / "pf_aliases"
    theirs.write_text(ALIASES)
    assert alias_cli.main(["-c", str(conf), str(ours)], "alias") == 0
    env = {"MAIL_CONFIG": str(conf), "PATH": "/usr/sbin:/usr/bin:/bin"}
    subprocess.run(["postalias", f"hash:{theirs}"], capture_output=True, env=env, check=True)
    clear_cache()
    table = open_map(f"lmdb:{ours}")
    for key in ("postmaster", "team", "first last", "list", "nobody"):
        out = subprocess.run(
            ["postalias", "-q", key, f"hash:{theirs}"], capture_output=True, text=True, env=env
        ).stdout
        assert (table.lookup(key) or "") == out.rstrip("\n")
    clear_cache()
