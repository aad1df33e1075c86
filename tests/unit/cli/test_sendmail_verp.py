"""sendmail -XV (and Postfix 2.2's -V): VERP delimiters in the maildrop file,
through pickup and cleanup into the queue."""

from __future__ import annotations

import io
import sys

import pytest

from mta.cleanup import Cleanup
from mta.cli.sendmail import main, parse_args
from mta.common.verp import VERP_ATTR
from mta.config import load_config
from mta.pickup import Pickup
from mta.queue.queue_file import read_queue_file
from tests.support.instance import incoming_files, make_instance
from tests.support.sendmail import maildrop


@pytest.mark.parametrize(
    "argv, delims, rest",
    [
        (["-XV", "-f", "o@x"], "", []),
        (["-XV+=", "-f", "o@x"], "+=", []),
        (["-X", "V-=", "u@y"], "-=", ["u@y"]),
        (["-V", "-f", "o@x", "u@y"], "", ["u@y"]),  # old form: the next word has 2 characters
        (["-V-=", "u@y"], "-=", ["u@y"]),  # old form with delimiters
    ],
)
def test_verp_options(argv, delims, rest):
    opts, recipients = parse_args(argv)
    assert (opts["XV"], recipients) == (delims, rest)


def test_v_with_a_longer_word_is_still_the_envelope_id():
    opts, _ = parse_args(["-V", "envid-1234", "u@y"])
    assert opts["V"] == "envid-1234" and "XV" not in opts


def test_x_log_file_is_still_ignored():
    opts, recipients = parse_args(["-X", "/tmp/trace", "u@y"])
    assert "XV" not in opts and recipients == ["u@y"]


def run(monkeypatch, cdir, *args: str) -> int:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"Subject: s\n\nhi\n")))
    return main(["-C", str(cdir), *args], prog="sendmail")


def test_xv_puts_the_default_delimiters_in_the_maildrop_file(tmp_path, monkeypatch):
    cdir = make_instance(tmp_path, "default_verp_delimiters = -=\n")
    assert run(monkeypatch, cdir, "-XV", "-f", "owner@example.com", "u@x.example") == 0
    (path,) = maildrop(cdir)
    assert read_queue_file(path).attrs[VERP_ATTR] == "-="


def test_explicit_delimiters_go_through_pickup_and_cleanup(tmp_path, monkeypatch):
    cdir = make_instance(tmp_path)
    assert run(monkeypatch, cdir, "-XV+=", "-f", "owner@example.com", "u@x.example") == 0
    cfg = load_config(str(cdir))
    Pickup(cfg, Cleanup(cfg)).scan()
    (path,) = incoming_files(cdir)
    msg = read_queue_file(path)
    assert (msg.sender, msg.attrs[VERP_ATTR]) == ("owner@example.com", "+=")


def test_old_v_form_warns_and_asks_for_verp(tmp_path, monkeypatch, capsys):
    cdir = make_instance(tmp_path)
    assert run(monkeypatch, cdir, "-V+=", "-f", "owner@example.com", "u@x.example") == 0
    assert "-XV+=" in capsys.readouterr().err
    (path,) = maildrop(cdir)
    assert read_queue_file(path).attrs[VERP_ATTR] == "+="


def test_no_verp_without_the_option(tmp_path, monkeypatch):
    cdir = make_instance(tmp_path)
    assert run(monkeypatch, cdir, "-f", "owner@example.com", "u@x.example") == 0
    (path,) = maildrop(cdir)
    assert VERP_ATTR not in read_queue_file(path).attrs


@pytest.mark.parametrize("option", ["-XV+x", "-XV+", "-XV+=-"])
def test_bad_delimiters_are_a_usage_error(tmp_path, monkeypatch, capsys, option):
    cdir = make_instance(tmp_path)
    assert run(monkeypatch, cdir, option, "-f", "owner@example.com", "u@x.example") == 64
    assert "-V requires two characters from -=+" in capsys.readouterr().err
    assert maildrop(cdir) == []


def test_verp_needs_a_sender(tmp_path, monkeypatch, capsys):
    cdir = make_instance(tmp_path)
    assert run(monkeypatch, cdir, "-XV", "-f", "<>", "u@x.example") == 64
    assert "-V option requires non-null sender address" in capsys.readouterr().err
    assert maildrop(cdir) == []
