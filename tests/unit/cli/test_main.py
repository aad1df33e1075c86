"""The mta dispatcher: help, unknown commands, -c before or after the subcommand."""

import subprocess
import sys

from mta.cli import main as cli_main


def test_help_lists_every_command(capsys):
    assert cli_main.run(["--help"]) == 0
    out = capsys.readouterr().out
    for name in cli_main.COMMANDS:
        assert f"  {name} " in out


def test_no_command_is_a_usage_error(capsys):
    assert cli_main.run([]) == 2
    assert "usage: mta" in capsys.readouterr().err


def test_unknown_command_names_it(capsys):
    assert cli_main.run(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


def test_unknown_global_option(capsys):
    assert cli_main.run(["-z", "conf"]) == 2
    assert "unknown option -z" in capsys.readouterr().err


def test_global_c_is_forwarded_first(monkeypatch):
    seen = {}

    class Fake:
        @staticmethod
        def main(argv, command):
            seen["argv"], seen["command"] = argv, command
            return 7

    monkeypatch.setitem(sys.modules, "mta.cli.fake", Fake)
    monkeypatch.setitem(cli_main.COMMANDS, "fake", ("mta.cli.fake", "test"))
    assert cli_main.run(["-c", "/x", "-v", "fake", "-n"]) == 7
    assert seen == {"argv": ["-c", "/x", "-v", "-n"], "command": "fake"}
    assert cli_main.run(["-c/y", "fake"]) == 7
    assert seen["argv"] == ["-c", "/y"]


def test_every_command_has_help(tmp_path):
    env_home = {"XDG_STATE_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    for name in cli_main.COMMANDS:
        result = subprocess.run(
            [sys.executable, "-m", "mta", name, "--help"],
            capture_output=True,
            text=True,
            env=env_home,
            cwd=tmp_path,
        )
        assert result.returncode == 0, (name, result.stderr)
        assert f"mta {name}" in result.stdout, name


def test_c_before_after_and_from_environment_agree(tmp_path):
    (tmp_path / "main.cf").write_text("myhostname = where.example\n")
    base = {"PATH": "/usr/bin:/bin", "XDG_STATE_HOME": str(tmp_path / "state")}

    def conf(args, env=None):
        result = subprocess.run(
            [sys.executable, "-m", "mta", *args],
            capture_output=True,
            text=True,
            env={**base, **(env or {})},
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    expected = "myhostname = where.example\n"
    assert conf(["-c", str(tmp_path), "conf", "-n"]) == expected
    assert conf(["conf", "-c", str(tmp_path), "-n"]) == expected
    assert conf(["conf", "-n"], {"MTA_CONFIG_DIR": str(tmp_path)}) == expected


def test_version_prints_the_package_version(capsys):
    import mta

    assert cli_main.run(["--version"]) == 0
    assert capsys.readouterr().out == f"mta {mta.__version__}\n"


def test_argparse_errors_read_as_fatal_lines(tmp_path, capsys):
    import pytest

    with pytest.raises(SystemExit) as exc:
        cli_main.run(["kick", "-c", str(tmp_path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: mta kick")
    assert err.endswith(
        "mta kick: fatal: the following arguments are required: CLASS, SERVICE, REQUEST\n"
    )


def test_an_os_error_is_one_fatal_line_not_a_traceback(monkeypatch, tmp_path, capsys):
    missing = str(tmp_path / "missing")

    class Opens:
        @staticmethod
        def main(argv, command):
            open(missing)

    monkeypatch.setitem(sys.modules, "mta.cli.opens", Opens)
    monkeypatch.setitem(cli_main.COMMANDS, "opens", ("mta.cli.opens", "test"))
    assert cli_main.run(["opens"]) == 1
    assert capsys.readouterr().err == f"mta opens: fatal: {missing}: No such file or directory\n"
