"""memcache: tables against a real memcached (Debian's memcached, started per module as an
unprivileged process on 127.0.0.1): lookups, key_format and the domain list, the backup
table and its copy into memcache, limits, a server that is down, and mta map / mta check."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time

import pytest

from mta.maps import MapError, MapRetry, open_map
from mta.maps.maps import clear_cache, set_warning_handler
from tests.support.instance import make_instance
from tests.support.memcached_server import MemcachedServer, memcached_available
from tests.support.running import free_port

why = memcached_available()
pytestmark = [
    pytest.mark.interop,
    pytest.mark.timeout(60),
    pytest.mark.skipif(why is not None, reason=why or ""),
]


@pytest.fixture(scope="module")
def mc():
    with MemcachedServer() as server:
        yield server


@pytest.fixture
def warnings():
    seen: list[str] = []
    set_warning_handler(seen.append)
    yield seen
    set_warning_handler(None)


def table(tmp_path, port: int, fold: bool = True, **params):
    lines = [f"memcache = inet:127.0.0.1:{port}"] + [f"{k} = {v}" for k, v in params.items()]
    cf = tmp_path / f"t{len(list(tmp_path.iterdir()))}.cf"
    cf.write_text("\n".join(lines) + "\n")
    clear_cache()
    return open_map(f"memcache:{cf}", fold=fold)


def test_found_and_not_found(tmp_path, mc):
    mc.set("a@example.com", b"b@example.net", flags=42)
    t = table(tmp_path, mc.port)
    assert t.lookup("a@example.com") == "b@example.net"  # the stored flags are ignored
    assert t.lookup("A@Example.COM") == "b@example.net"  # folded, as a main.cf table
    assert t.lookup("nobody@example.com") is None


def test_key_format_and_expansions(tmp_path, mc):
    mc.set("aliases:a@example.com", b"one")
    mc.set("dom:example.com", b"two")
    mc.set("tld:com/example", b"three")
    assert table(tmp_path, mc.port, key_format="aliases:%s").lookup("a@example.com") == "one"
    by_domain = table(tmp_path, mc.port, key_format="dom:%d")
    assert by_domain.lookup("x@example.com") == "two"
    assert by_domain.lookup("no-domain") is None  # %d of an unqualified key: suppressed
    assert table(tmp_path, mc.port, key_format="tld:%1/%2").lookup("x@example.com") == "three"
    assert table(tmp_path, mc.port, key_format="tld:%1/%2").lookup("x@com") is None
    assert table(tmp_path, mc.port, key_format="u:%u").lookup("@example.com") is None


def test_domain_list_limits_the_keys_looked_up(tmp_path, mc):
    mc.set("c@example.com", b"listed")
    mc.set("c@other.example", b"unlisted")
    mc.set("example.com", b"bare domain")
    t = table(tmp_path, mc.port, domain="example.com, inline:{ third.example=yes }")
    assert t.lookup("c@example.com") == "listed"
    assert t.lookup("c@other.example") is None
    assert t.lookup("example.com") is None  # bare domains are not eligible
    mc.set("d@third.example", b"via table")
    assert t.lookup("d@third.example") == "via table"


def test_keys_memcached_cannot_take_are_not_found(tmp_path, mc, warnings):
    t = table(tmp_path, mc.port)
    mc.set("x", b"not this one")
    assert t.lookup("a b\r\nget x") is None  # never a second command
    assert t.lookup("k" * 251) is None
    assert t.lookup("") is None
    assert len(warnings) == 3 and all("not looked up" in w for w in warnings)
    assert t.lookup("x") == "not this one"  # the connection still works


def test_backup_answers_a_miss_and_fills_memcache(tmp_path, mc):
    mc.delete("bk:u@example.com")
    t = table(
        tmp_path,
        mc.port,
        key_format="bk:%s",
        backup="inline:{ u@example.com=from-backup }",
        flags=7,
        ttl=120,
    )
    assert t.lookup("u@example.com") == "from-backup"
    assert mc.get("bk:u@example.com") == (7, b"from-backup")
    assert t.lookup("v@example.com") is None
    assert mc.get("bk:v@example.com") is None
    mc.set("bk:u@example.com", b"memcache wins")
    assert t.lookup("u@example.com") == "memcache wins"


def test_ttl_expires_the_copy(tmp_path, mc):
    mc.delete("ttl:k")
    t = table(tmp_path, mc.port, key_format="ttl:%s", backup="inline:{ k=v }", ttl=1)
    assert t.lookup("k") == "v"
    assert mc.get("ttl:k") == (0, b"v")
    time.sleep(2.1)
    assert mc.get("ttl:k") is None


def test_value_over_data_size_limit_is_a_retry(tmp_path, mc):
    mc.set("big", b"x" * 200)
    t = table(tmp_path, mc.port, data_size_limit=100, max_try=1)
    with pytest.raises(MapRetry, match="longer than data_size_limit 100"):
        t.lookup("big")
    mc.set("small", b"y" * 100)
    assert t.lookup("small") == "y" * 100  # the next lookup reconnects


def test_utf8_values_and_keys(tmp_path, mc):
    mc.set("ü@example.com", "wert-ä".encode())
    t = table(tmp_path, mc.port, fold=False)
    assert t.lookup("ü@example.com") == "wert-ä"


def test_server_down_is_a_retry_without_backup(tmp_path):
    port = free_port()
    t = table(tmp_path, port, retry_pause=5, max_try=3)
    start = time.monotonic()
    with pytest.raises(MapRetry, match=f"connect to memcache inet:127.0.0.1:{port}"):
        t.lookup("a@example.com")
    assert time.monotonic() - start < 2  # a refused connection is not tried again


def test_server_down_falls_back_to_the_backup(tmp_path):
    t = table(tmp_path, free_port(), backup="inline:{ a@example.com=kept }")
    assert t.lookup("a@example.com") == "kept"
    assert t.lookup("b@example.com") is None


def test_server_that_restarts_is_reconnected(tmp_path):
    with MemcachedServer() as server:
        server.set("k", b"1")
        t = table(tmp_path, server.port, retry_pause=0)
        assert t.lookup("k") == "1"
        server.stop()
        server.start()
        server.set("k", b"2")
        assert t.lookup("k") == "2"  # the kept connection was dead: tried again


def test_silent_server_times_out(tmp_path):
    quiet = socket.create_server(("127.0.0.1", 0))
    conns = []
    threading.Thread(target=lambda: conns.append(quiet.accept()), daemon=True).start()
    try:
        t = table(tmp_path, quiet.getsockname()[1], timeout=1, max_try=1)
        start = time.monotonic()
        with pytest.raises(MapRetry, match="timeout"):
            t.lookup("k")
        assert time.monotonic() - start < 5
    finally:
        quiet.close()


def test_unix_socket_server(tmp_path):
    import os
    import shutil
    import tempfile

    top = tempfile.mkdtemp(prefix="mta-mc-")
    os.chmod(top, 0o777)  # memcached runs as nobody
    path = os.path.join(top, "mc.sock")
    argv = ["memcached", "-s", path, "-a", "0666", "-m", "16"]
    if os.geteuid() == 0:
        argv += ["-u", "nobody"]
    proc = subprocess.Popen(argv)
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.05)
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(path)
            s.sendall(b"set uk 0 0 3\r\nabc\r\n")
            assert s.recv(100) == b"STORED\r\n"
        cf = tmp_path / "unix.cf"
        cf.write_text(f"memcache = unix:{path}\n")
        clear_cache()
        assert open_map(f"memcache:{cf}").lookup("uk") == "abc"
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(top, ignore_errors=True)


def test_mta_map_queries_and_mta_check_names_a_broken_table(tmp_path, mc):
    mc.set("q@example.com", b"answer")
    good = tmp_path / "good.cf"
    good.write_text(f"memcache = inet:127.0.0.1:{mc.port}\n")
    bad = tmp_path / "bad.cf"
    bad.write_text(f"memcache = inet:127.0.0.1:{mc.port}\nkey_fromat = %s\n")
    cdir = make_instance(tmp_path / "inst", f"virtual_alias_maps = memcache:{bad}\n")
    run = [sys.executable, "-m", "mta"]
    r = subprocess.run(
        [*run, "map", "-c", str(cdir), "-q", "q@example.com", f"memcache:{good}"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (r.returncode, r.stdout) == (0, "answer\n"), r.stderr
    r = subprocess.run([*run, "check", "-c", str(cdir)], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert f"{bad}, line 2: unknown parameter 'key_fromat'" in r.stderr


def test_bad_configuration_is_a_map_error_naming_the_file(tmp_path):
    for params, message in [
        ({"memcache": "tcp:host:1"}, "expected inet:host:port or unix:/path"),
        ({"ttl": "soon"}, "ttl must be a number"),
        ({"key_format": "%x"}, "key_format: unknown expansion %x"),
        ({"max_try": "0"}, "max_try must be 1 or more"),
    ]:
        cf = tmp_path / "bad.cf"
        cf.write_text("".join(f"{k} = {v}\n" for k, v in params.items()))
        clear_cache()
        with pytest.raises(MapError, match=str(cf)) as info:
            open_map(f"memcache:{cf}")
        assert message in str(info.value)
    clear_cache()
    with pytest.raises(MapError, match="missing.cf"):
        open_map(f"memcache:{tmp_path}/missing.cf")
