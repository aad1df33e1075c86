"""mta rewrite: per-address lines and JSON."""

import json

from mta.cli import rewrite


def _conf(tmp_path, extra=""):
    conf = tmp_path / "etc"
    conf.mkdir()
    (conf / "main.cf").write_text(
        "myhostname = mx.example.com\nmydomain = example.com\n"
        "inet_interfaces = loopback-only\n" + extra
    )
    return str(conf)


def test_plain_line(tmp_path, capsys):
    assert rewrite.main(["-c", _conf(tmp_path), "joe"]) == 0
    assert capsys.readouterr().out == (
        "joe -> joe@mx.example.com: local, transport=local nexthop=mx.example.com "
        "recipient=joe@mx.example.com\n"
    )


def test_json_remote(tmp_path, capsys):
    conf = _conf(tmp_path, "remote_header_rewrite_domain = domain.invalid\n")
    assert rewrite.main(["-c", conf, "--json", "-s", "remote", "joe", "u%v@localhost"]) == 0
    first, second = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert first["rewritten"] == "joe@domain.invalid"
    assert first["class"] == "default"
    assert second["recipient"] == "u@v" and second["flags"] == ["routed"]


def test_null_sender_notation(tmp_path, capsys):
    assert rewrite.main(["-c", _conf(tmp_path), "<>"]) == 0
    assert capsys.readouterr().out.startswith("<> -> <>: local")


def test_bad_table_is_one_line_error(tmp_path, capsys):
    conf = _conf(tmp_path, f"transport_maps = lmdb:{tmp_path}/missing\n")
    assert rewrite.main(["-c", conf, "joe"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("mta rewrite: fatal: ") and err.count("\n") == 1


def test_registered_in_dispatcher():
    from mta.cli.main import COMMANDS

    assert COMMANDS["rewrite"][0] == "mta.cli.rewrite"
