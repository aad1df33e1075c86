"""mta map against Postfix's postmap: same sources, same answers; lmdb files readable both ways.

Debian's postfix package carries some table types only in add-on packages
(postfix-lmdb, postfix-pcre; .ci/run installs them): a test whose type the
installed Postfix lacks ("postconf -m") is skipped with that reason.
"""

import functools
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(shutil.which("postmap") is None, reason="postmap not installed"),
]

POSTMAP = shutil.which("postmap") or "postmap"
PACKAGE_OF = {"lmdb": "postfix-lmdb", "pcre": "postfix-pcre"}  # Debian add-on packages


@functools.cache
def postfix_map_types() -> frozenset[str]:
    """The table types the installed Postfix supports (postconf -m)."""
    if shutil.which("postconf") is None:
        return frozenset()
    with tempfile.TemporaryDirectory() as conf:
        open(os.path.join(conf, "main.cf"), "w").close()
        out = subprocess.run(
            ["postconf", "-c", conf, "-m"], capture_output=True, text=True, timeout=30
        ).stdout
    return frozenset(out.split())


def needs(kind: str):
    """Skip unless Postfix supports table type kind."""
    package = PACKAGE_OF.get(kind, "postfix")
    return pytest.mark.skipif(
        kind not in postfix_map_types(),
        reason=f"Postfix lacks the {kind} table type (Debian package {package})",
    )


def kinds(*names: str) -> list:
    """Parameters (kind, text) each marked to skip when Postfix lacks the kind."""
    return [pytest.param(kind, text, marks=needs(kind), id=kind) for kind, text in names]


TEXT = (
    "Alice@Example.com alice\n"
    "bob@example.com  bob smith\n"
    "  continued\n"
    "# comment\n"
    '"quoted key" q\n'
    "k: colon\n"
    "novalue\n"
    "dup first\n"
    "DUP second\n"
)
REGEXP = (
    "/^(.*)@old\\.example$/ $1@new.example\n"
    "if /@example\\.com$/\n"
    "!/^admin/ user ${1}\n"
    "/^admin@/ admin\n"
    "endif\n"
    "/[[:digit:]]{3}/ digits\n"
    "/^CASE$/i sensitive\n"
)
CIDR = "192.168.1.1 one\n192.168.0.0/16 lan\n[::1]/128 lo6\n2001:db8::/32 doc\n!10.0.0.0/8 notten\n"
KEYS = [
    "alice@example.com",
    "ALICE@EXAMPLE.COM",
    "bob@example.com",
    '"quoted key"',
    "k:",
    "dup",
    "novalue",
    "u@old.example",
    "x@example.com",
    "admin@example.com",
    "a123",
    "CASE",
    "case",
    "192.168.1.1",
    "192.168.9.9",
    "::1",
    "2001:db8::7",
    "10.1.1.1",
    "11.1.1.1",
    "[::1]",
    "host.example",
    "",
]


@pytest.fixture
def conf(tmp_path):
    d = tmp_path / "conf"
    d.mkdir()
    (d / "main.cf").write_text("")
    return str(d)


def postmap(conf, *args, stdin=None):
    return subprocess.run(
        [POSTMAP, "-c", conf, *args], input=stdin, capture_output=True, timeout=30, text=True
    )


def mta_map(conf, *args, stdin=None):
    return subprocess.run(
        [sys.executable, "-m", "mta", "map", "-c", conf, *args],
        input=stdin,
        capture_output=True,
        timeout=30,
        text=True,
        env={**os.environ, "MTA_CONFIG_DIR": conf},
    )


# single -q runs start a process per key: a few keys that exercise each table type
SINGLE_KEYS = {
    "texthash": ["ALICE@EXAMPLE.COM", "novalue"],
    "regexp": ["x@example.com", "case"],
    "pcre": ["u@old.example", "a123"],
    "cidr": ["192.168.9.9", "11.1.1.1"],
    "lmdb": ["ALICE@EXAMPLE.COM", "dup", "nothere"],
}


def answers(run, conf, table):
    out = {}
    for key in SINGLE_KEYS[table.split(":", 1)[0]]:
        r = run(conf, "-q", key, table)
        out[key] = (r.returncode, r.stdout)
    return out


@pytest.mark.parametrize(
    "kind,text",
    kinds(("texthash", TEXT), ("regexp", REGEXP), ("pcre", REGEXP), ("cidr", CIDR)),
)
def test_single_queries_agree(tmp_path, conf, kind, text):
    src = tmp_path / "table"
    src.write_text(text)
    table = f"{kind}:{src}"
    assert answers(mta_map, conf, table) == answers(postmap, conf, table)


@pytest.mark.parametrize(
    "kind,text",
    kinds(("texthash", TEXT), ("regexp", REGEXP), ("pcre", REGEXP), ("cidr", CIDR)),
)
def test_stdin_queries_agree(tmp_path, conf, kind, text):
    src = tmp_path / "table"
    src.write_text(text)
    keys = "\n".join(k for k in KEYS if k) + "\n"
    ours = mta_map(conf, "-q", "-", f"{kind}:{src}", stdin=keys)
    theirs = postmap(conf, "-q", "-", f"{kind}:{src}", stdin=keys)
    assert (ours.returncode, ours.stdout) == (theirs.returncode, theirs.stdout)


@needs("lmdb")
def test_lmdb_built_by_mta_reads_in_postmap(tmp_path, conf):
    src = tmp_path / "table"
    src.write_text(TEXT)
    assert mta_map(conf, f"lmdb:{src}").returncode == 0
    ours = sorted(postmap(conf, "-s", f"lmdb:{src}").stdout.splitlines())
    (tmp_path / "copy").write_text(TEXT)
    assert postmap(conf, f"lmdb:{tmp_path}/copy").returncode == 0
    theirs = sorted(postmap(conf, "-s", f"lmdb:{tmp_path}/copy").stdout.splitlines())
    assert ours == theirs


@needs("lmdb")
def test_lmdb_built_by_postmap_reads_in_mta(tmp_path, conf):
    src = tmp_path / "table"
    src.write_text(TEXT)
    assert postmap(conf, f"lmdb:{src}").returncode == 0
    assert answers(mta_map, conf, f"lmdb:{src}") == answers(postmap, conf, f"lmdb:{src}")


@needs("texthash")
def test_source_warnings_name_the_same_lines(tmp_path, conf):
    """Syntax warnings agree; duplicate keys are warned without a line number here."""
    src = tmp_path / "table"
    src.write_text(TEXT)

    def lines(err):
        return sorted(
            {
                ln.split(", line ")[1].split(":")[0]
                for ln in err.splitlines()
                if ", line " in ln and "duplicate" not in ln
            }
        )

    ours = lines(mta_map(conf, f"texthash:{src}", "-q", "x").stderr)
    assert ours == lines(postmap(conf, "-q", "x", f"texthash:{src}").stderr) == ["6", "7"]


MESSAGES = [
    "Subject: hi\nX-Fold: a\n b\nTo: x\n\nbody one\nTo: not header\nbody two\n",
    "Subject: hi\nX-Fold: a\n b\nnotheader\nbody1\n\nbody2\n",
    "Subject: hi\n\n\nbody1\n",
    "body1\nbody2",
    " cont\nA: b\n\nx\n",
    "Good : y\nGood\t: z\nX_a.b!#$%: y\n\nbody\n",
    "From x@y Mon\nB: 2\n\nbody\n",
    "A: 1\n\tcont\n  two\nB: 2\n\nbody\n",
    "A: 1\n",
    "",
]
MESSAGE_RULES = "/^/ any\n"


@needs("regexp")
@pytest.mark.parametrize("flags", ["-h", "-b", "-bh"])
@pytest.mark.parametrize("message", range(len(MESSAGES)))
def test_message_query_modes_agree(tmp_path, conf, flags, message):
    """-h and -b turn a message into the same lookup keys as postmap's (without -m)."""
    rules = tmp_path / "rules"
    rules.write_text(MESSAGE_RULES)
    text = MESSAGES[message]
    ours = mta_map(conf, flags, "-q", "-", f"regexp:{rules}", stdin=text)
    theirs = postmap(conf, flags, "-q", "-", f"regexp:{rules}", stdin=text)
    assert (ours.returncode, ours.stdout) == (theirs.returncode, theirs.stdout)


@needs("hash")
def test_F_base64_values_agree_with_postmap(tmp_path, conf):
    """-F stores the same base64 text as postmap -F and decodes it the same way."""
    (tmp_path / "a.pem").write_text("first\n")
    (tmp_path / "b.pem").write_text("second\n")
    text = f"one {tmp_path}/a.pem\ntwo {tmp_path}/a.pem, {tmp_path}/b.pem\n"
    (tmp_path / "ours").write_text(text)
    (tmp_path / "theirs").write_text(text)
    assert mta_map(conf, "-F", f"hash:{tmp_path}/ours").returncode == 0
    assert postmap(conf, "-F", f"hash:{tmp_path}/theirs").returncode == 0
    for key in ("one", "two"):
        stored = mta_map(conf, "-q", key, f"hash:{tmp_path}/ours").stdout
        assert stored == postmap(conf, "-q", key, f"hash:{tmp_path}/theirs").stdout
        decoded = mta_map(conf, "-F", "-q", key, f"hash:{tmp_path}/ours").stdout
        assert decoded == postmap(conf, "-F", "-q", key, f"hash:{tmp_path}/theirs").stdout
