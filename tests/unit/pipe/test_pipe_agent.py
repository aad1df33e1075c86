"""The pipe agent through the real request protocol, with a real script behind it."""

import os

import pytest

from mta.pipe import make_deliver
from mta.queue.queue_file import read_queue_file
from tests.support.agent import queue_message, request_for, run_agent

BODY = b"Subject: hi\nFrom: <a@example.org>\n\nline one\n.dot line\nFrom here\n"


def deliver(cfg, tmp_path, args, rcpts=("x@one.example",), body=BODY, service="mypipe", **kw):
    msg = queue_message(cfg, list(rcpts), body=body, **kw)
    result = run_agent(make_deliver(args, service), cfg, request_for(msg, "One.Example"), tmp_path)
    return msg, result


def maillog(tmp_path):
    return (tmp_path / "maillog").read_text()


def test_exit_0_relays_and_marks_done(pipe_cfg, tmp_path, recorder):
    msg, result = deliver(pipe_cfg, tmp_path, recorder.args("${sender}", "${recipient}"))
    assert [(st.action, st.dsn) for st in result.statuses] == [("relayed", "2.0.0")]
    assert result.statuses[0].reason == "delivered via mypipe service"
    assert result.statuses[0].relay == "mypipe"
    assert recorder.argv() == ["a@example.org", "x@one.example"]
    assert recorder.stdin() == BODY
    assert all(r.done for r in read_queue_file(msg.path).recipients)
    assert "relay=mypipe" in maillog(tmp_path) and "status=sent" in maillog(tmp_path)


def test_flag_x_reports_delivered(pipe_cfg, tmp_path, recorder):
    _, result = deliver(pipe_cfg, tmp_path, recorder.args(flags="X"))
    assert result.statuses[0].action == "delivered"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch users")
def test_command_runs_as_user(pipe_cfg, tmp_path, recorder):
    deliver(pipe_cfg, tmp_path, recorder.args())
    assert recorder.uid() == 65534


def test_recipient_macro_expands_once_per_recipient(pipe_cfg, tmp_path, recorder):
    rcpts = ("x@one.example", "y@one.example")
    _, result = deliver(pipe_cfg, tmp_path, recorder.args("-r", "<${recipient}>"), rcpts)
    assert recorder.runs() == 1
    assert recorder.argv() == ["-r", "<x@one.example>", "<y@one.example>"]
    assert [st.action for st in result.statuses] == ["relayed", "relayed"]


@pytest.mark.main_cf("mypipe_destination_recipient_limit = 1\n")
def test_recipient_limit_1_runs_once_per_recipient(pipe_cfg, tmp_path, recorder):
    deliver(pipe_cfg, tmp_path, recorder.args("${user}"), ("x@one.example", "y@one.example"))
    assert recorder.runs() == 2
    assert sorted(recorder.argv(0) + recorder.argv(1)) == ["x", "y"]


def test_message_macros(pipe_cfg, tmp_path, recorder):
    args = recorder.args("${nexthop}", "${queue_id}", "${size}", "$domain", "$(mailbox)", "$$x")
    msg, _ = deliver(pipe_cfg, tmp_path, args)
    assert recorder.argv() == [
        "One.Example",
        msg.queue_id,
        str(msg.content_size),
        "one.example",
        "x",
        "$x",
    ]


@pytest.mark.main_cf("recipient_delimiter = +\n")
def test_user_and_extension_split_at_delimiter(pipe_cfg, tmp_path, recorder):
    deliver(
        pipe_cfg,
        tmp_path,
        recorder.args("${user}", "${extension}", "${mailbox}"),
        ("joe+lists@one.example",),
    )
    assert recorder.argv() == ["joe", "lists", "joe+lists"]


def test_flags_h_u_fold_case(pipe_cfg, tmp_path, recorder):
    deliver(
        pipe_cfg,
        tmp_path,
        recorder.args("${recipient}", "${nexthop}", flags="hu"),
        ("Joe.X@One.EXAMPLE",),
    )
    assert recorder.argv() == ["joe.x@one.example", "one.example"]


def test_flag_q_quotes_local_part(pipe_cfg, tmp_path, recorder):
    deliver(pipe_cfg, tmp_path, recorder.args("${recipient}", flags="q"), ("john doe@one.example",))
    assert recorder.argv() == ['"john doe"@one.example']


def test_null_sender_becomes_mailer_daemon(pipe_cfg, tmp_path, recorder):
    deliver(pipe_cfg, tmp_path, recorder.args("${sender}", flags="R"), sender="")
    assert recorder.argv() == ["MAILER-DAEMON"]
    assert recorder.stdin().startswith(b"Return-Path: <MAILER-DAEMON>\n")


def test_flags_f_r_d_o_prepend_in_order(pipe_cfg, tmp_path, recorder):
    deliver(pipe_cfg, tmp_path, recorder.args(flags="FRDO"), ("X@one.example",))
    lines = recorder.stdin().split(b"\n")
    assert lines[0].startswith(b"From a@example.org ")
    assert lines[1:4] == [
        b"Return-Path: <a@example.org>",
        b"Delivered-To: x@one.example",
        b"X-Original-To: X@one.example",
    ]
    assert b"\n".join(lines[4:]) == BODY


def test_flags_dot_and_from_quoting(pipe_cfg, tmp_path, recorder):
    deliver(pipe_cfg, tmp_path, recorder.args(flags=".>B"))
    assert recorder.stdin() == (
        b"Subject: hi\nFrom: <a@example.org>\n\nline one\n..dot line\n>From here\n\n"
    )


def test_eol_crlf(pipe_cfg, tmp_path, recorder):
    deliver(pipe_cfg, tmp_path, recorder.args(extra=("eol=\\r\\n",)))
    assert recorder.stdin() == BODY.replace(b"\n", b"\r\n")


def test_flag_d_with_several_recipients_is_a_config_error(pipe_cfg, tmp_path, recorder):
    _, result = deliver(
        pipe_cfg, tmp_path, recorder.args(flags="D"), ("x@a.example", "y@a.example")
    )
    assert [(st.action, st.dsn) for st in result.statuses] == [("delayed", "4.3.5")] * 2
    assert recorder.runs() == 0
    assert "requires mypipe_destination_recipient_limit = 1" in maillog(tmp_path)


def test_flag_d_bounces_a_loop(pipe_cfg, tmp_path, recorder):
    body = b"Delivered-To: X@One.example\nSubject: loop\n\nbody\n"
    _, result = deliver(pipe_cfg, tmp_path, recorder.args(flags="D"), body=body)
    assert [(st.action, st.dsn) for st in result.statuses] == [("failed", "5.4.6")]
    assert "mail forwarding loop" in result.statuses[0].reason
    assert recorder.runs() == 0


def test_exit_75_defers(pipe_cfg, tmp_path, recorder):
    recorder.behave(exit=75, say="try again later\n")
    msg, result = deliver(pipe_cfg, tmp_path, recorder.args())
    st = result.statuses[0]
    assert (st.action, st.dsn) == ("delayed", "4.3.0")
    assert st.reason.startswith("Command died with status 75: ")
    assert st.reason.endswith("Command output: try again later")
    assert not any(r.done for r in read_queue_file(msg.path).recipients)


def test_exit_71_defers(pipe_cfg, tmp_path, recorder):
    recorder.behave(exit=71)
    _, result = deliver(pipe_cfg, tmp_path, recorder.args())
    assert (result.statuses[0].action, result.statuses[0].dsn) == ("delayed", "4.3.0")


def test_exit_67_bounces_with_output(pipe_cfg, tmp_path, recorder):
    recorder.behave(exit=67, say="no such mailbox\nsecond line\n")
    msg, result = deliver(pipe_cfg, tmp_path, recorder.args())
    st = result.statuses[0]
    assert (st.action, st.dsn) == ("failed", "5.1.1")
    assert st.reason == (
        f'Command died with status 67: "{recorder.script}". '
        "Command output: no such mailbox second line"
    )
    assert all(r.done for r in read_queue_file(msg.path).recipients)
    assert "status=bounced (Command died with status 67" in maillog(tmp_path)


def test_exit_status_outside_sysexits_bounces(pipe_cfg, tmp_path, recorder):
    recorder.behave(exit=1)
    _, result = deliver(pipe_cfg, tmp_path, recorder.args())
    assert (result.statuses[0].action, result.statuses[0].dsn) == ("failed", "5.3.0")


def test_enhanced_code_in_output_wins(pipe_cfg, tmp_path, recorder):
    recorder.behave(exit=1, say="4.2.2 mailbox full\n")
    _, result = deliver(pipe_cfg, tmp_path, recorder.args())
    st = result.statuses[0]
    assert (st.action, st.dsn) == ("delayed", "4.2.2")
    assert st.reason.endswith("Command output: mailbox full")


@pytest.mark.main_cf("mypipe_time_limit = 1s\n")
def test_time_limit_kills_and_defers(pipe_cfg, tmp_path, recorder):
    recorder.behave(sleep=30)
    import time

    started = time.monotonic()
    _, result = deliver(pipe_cfg, tmp_path, recorder.args())
    assert time.monotonic() - started < 10
    st = result.statuses[0]
    assert (st.action, st.dsn) == ("delayed", "4.3.0")
    assert st.reason.startswith("Command time limit exceeded")


def test_size_limit_bounces_523(pipe_cfg, tmp_path, recorder):
    _, result = deliver(pipe_cfg, tmp_path, recorder.args(extra=("size=10",)))
    assert [(st.action, st.dsn) for st in result.statuses] == [("failed", "5.2.3")]
    assert recorder.runs() == 0


def test_size_limit_not_reached_delivers(pipe_cfg, tmp_path, recorder):
    _, result = deliver(pipe_cfg, tmp_path, recorder.args(extra=("size=100000",)))
    assert result.statuses[0].action == "relayed"


def test_unknown_macro_defers_435_and_names_master_cf(pipe_cfg, tmp_path, recorder):
    _, result = deliver(pipe_cfg, tmp_path, recorder.args("${bogus}"))
    st = result.statuses[0]
    assert (st.action, st.dsn) == ("delayed", "4.3.5")
    assert "unknown macro" in st.reason
    log = maillog(tmp_path)
    assert "warning:" in log and "master.cf: service mypipe: unknown macro ${bogus}" in log


@pytest.mark.skipif(os.geteuid() != 0, reason="only root must name a user")
def test_user_root_is_refused(pipe_cfg, tmp_path, recorder):
    args = [a if a != "user=nobody" else "user=root" for a in recorder.args()]
    _, result = deliver(pipe_cfg, tmp_path, args)
    assert (result.statuses[0].action, result.statuses[0].dsn) == ("delayed", "4.3.5")
    assert recorder.runs() == 0


def test_missing_command_defers(pipe_cfg, tmp_path):
    _, result = deliver(pipe_cfg, tmp_path, ["user=nobody", f"argv={tmp_path}/no/such/cmd"])
    st = result.statuses[0]
    assert (st.action, st.dsn) == ("delayed", "4.3.0")
    assert "cannot execute command" in st.reason


def test_command_that_ignores_stdin_still_delivers(pipe_cfg, tmp_path):
    body = b"Subject: big\n\n" + b"x" * 100 + b"\n" * 1
    big = body + (b"y" * 999 + b"\n") * 2000  # more than a pipe buffer
    _, result = deliver(pipe_cfg, tmp_path, ["user=nobody", "argv=/bin/true"], body=big)
    assert result.statuses[0].action == "relayed"
