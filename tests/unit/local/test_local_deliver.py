"""local agent: mailboxes, aliases, .forward, commands, files, loops, unknown users."""

import mailbox
import os
import stat

import pytest

from mta.config import load_config
from mta.local import deliver, split_recipient
from mta.local.aliases_file import build_alias_lmdb
from mta.queue.queue_file import iter_content, read_queue_file
from tests.support.agent import queue_message, request_for, run_agent
from tests.support.instance import incoming_files, make_instance

BODY = b"Subject: hi\nFrom: <a@example.org>\n\nFrom the start\nline two\n"
HOST = "mx.test.example"


def setup(tmp_path, extra="", rcpts=("root@mx.test.example",), body=BODY, sender="a@example.org"):
    (tmp_path / "mail").mkdir(exist_ok=True)
    cdir = make_instance(
        tmp_path,
        f"mail_spool_directory = {tmp_path / 'mail'}\n"
        f"forward_path = {tmp_path / 'fwd'}/$user\n"
        "deliver_lock_delay = 0\nalias_maps =\n" + extra,
    )
    cfg = load_config(str(cdir))
    msg = queue_message(cfg, list(rcpts), sender=sender, body=body)
    return cdir, cfg, msg


def run(cfg, msg, tmp_path):
    return run_agent(deliver, cfg, request_for(msg, HOST, transport="local"), tmp_path)


def aliases(tmp_path, text):
    path = tmp_path / "aliases"
    path.write_text(text)
    build_alias_lmdb(str(path))
    return f"alias_maps = lmdb:{path}\n"


def forwarded(cdir):
    """(recipients, content) of each message resubmitted into incoming/."""
    out = []
    for path in incoming_files(cdir):
        msg = read_queue_file(path)
        content = b"".join(line + b"\n" for line in iter_content(path, msg))
        out.append((msg.sender, [r.address for r in msg.recipients], content))
    return out


def test_mbox_delivery_reads_back(tmp_path):
    _, cfg, msg = setup(tmp_path)
    result = run(cfg, msg, tmp_path)
    st = result.statuses[0]
    assert (st.action, st.reason, st.relay) == ("delivered", "delivered to mailbox", "local")
    box = mailbox.mbox(str(tmp_path / "mail" / "root"))
    [m] = list(box)
    assert m["Return-Path"] == "<a@example.org>"
    assert m["Delivered-To"] == "root@mx.test.example"
    assert m["X-Original-To"] == "root@mx.test.example"
    assert m.get_from().startswith("a@example.org ")
    assert m.get_payload() == ">From the start\nline two\n"
    assert read_queue_file(msg.path).recipients[0].done
    assert stat.S_IMODE(os.stat(tmp_path / "mail" / "root").st_mode) == 0o600
    assert "status=sent (delivered to mailbox)" in (tmp_path / "maillog").read_text()


def test_mbox_appends_second_message_and_leaves_no_lock(tmp_path):
    _, cfg, msg = setup(tmp_path)
    run(cfg, msg, tmp_path)
    msg2 = queue_message(cfg, ["root@mx.test.example"], body=b"Subject: two\n\nsecond\n")
    run(cfg, msg2, tmp_path)
    box = mailbox.mbox(str(tmp_path / "mail" / "root"))
    assert [m["Subject"] for m in box] == ["hi", "two"]
    assert not (tmp_path / "mail" / "root.lock").exists()


def test_maildir_delivery_in_spool(tmp_path):
    _, cfg, msg = setup(tmp_path, f"mail_spool_directory = {tmp_path / 'maildir'}/\n")
    result = run(cfg, msg, tmp_path)
    assert result.statuses[0].reason == "delivered to maildir"
    md = mailbox.Maildir(str(tmp_path / "maildir" / "root"), create=False)
    [m] = list(md)
    assert m["Delivered-To"] == "root@mx.test.example"
    assert m.get_payload() == "From the start\nline two\n"
    assert os.listdir(tmp_path / "maildir" / "root" / "tmp") == []


def test_unknown_user_bounces_511(tmp_path):
    _, cfg, msg = setup(tmp_path, rcpts=("nosuchuser@mx.test.example",))
    st = run(cfg, msg, tmp_path).statuses[0]
    assert (st.action, st.dsn, st.reason) == ("failed", "5.1.1", 'unknown user: "nosuchuser"')


def test_luser_relay_forwards_unknown_user(tmp_path):
    cdir, cfg, msg = setup(
        tmp_path, "luser_relay = catchall+$user@example.net\n", ("nosuch@mx.test.example",)
    )
    st = run(cfg, msg, tmp_path).statuses[0]
    assert st.action == "delivered" and st.reason.startswith("forwarded as ")
    [(sender, rcpts, content)] = forwarded(cdir)
    assert rcpts == ["catchall+nosuch@example.net"]
    assert b"Delivered-To: nosuch@mx.test.example\n" in content


def test_delivered_to_loop_bounces_546(tmp_path):
    body = b"Delivered-To: root@mx.test.example\nSubject: x\n\nbody\n"
    _, cfg, msg = setup(tmp_path, body=body)
    st = run(cfg, msg, tmp_path).statuses[0]
    assert (st.action, st.dsn) == ("failed", "5.4.6")
    assert st.reason == "mail forwarding loop for root@mx.test.example"
    assert not (tmp_path / "mail" / "root").exists()


def test_alias_to_other_addresses_is_forwarded_once(tmp_path):
    extra = aliases(tmp_path, "team: root, bob@example.net, root\nowner-team: boss\n")
    cdir, cfg, msg = setup(tmp_path, extra, ("team@mx.test.example",))
    st = run(cfg, msg, tmp_path).statuses[0]
    assert st.reason.startswith("forwarded as ")
    [(sender, rcpts, content)] = forwarded(cdir)
    assert sorted(r.split("@")[0] for r in rcpts) == ["bob", "root"]
    assert sender.startswith("owner-team")
    assert b"Delivered-To: team@mx.test.example\n" in content
    assert b"From the start" in content


def test_alias_to_itself_goes_to_mailbox(tmp_path):
    extra = aliases(tmp_path, f"root: root, {tmp_path / 'copy'}\n")
    _, cfg, msg = setup(tmp_path, extra)
    st = run(cfg, msg, tmp_path).statuses[0]
    assert st.action == "delivered"
    assert len(mailbox.mbox(str(tmp_path / "mail" / "root"))) == 1
    assert len(mailbox.mbox(str(tmp_path / "copy"))) == 1


def test_alias_to_file_and_maildir(tmp_path):
    extra = aliases(tmp_path, f'files: "{tmp_path / "box"}", {tmp_path / "md"}/\n')
    _, cfg, msg = setup(tmp_path, extra, ("files@mx.test.example",))
    st = run(cfg, msg, tmp_path).statuses[0]
    assert st.action == "delivered"
    assert f"delivered to file: {tmp_path / 'box'}" in st.reason
    [m] = list(mailbox.mbox(str(tmp_path / "box")))
    assert m["Delivered-To"] == "files@mx.test.example"
    assert len(mailbox.Maildir(str(tmp_path / "md"), create=False)) == 1


def test_alias_to_command_runs_script_with_environment(tmp_path):
    script = tmp_path / "prog.sh"
    out = tmp_path / "out"
    script.write_text(f'#!/bin/sh\n{{ echo "$RECIPIENT $SENDER $USER"; cat; }} > {out}\n')
    script.chmod(0o755)
    extra = aliases(tmp_path, f'prog: "|{script}"\n')
    _, cfg, msg = setup(tmp_path, extra, ("prog@mx.test.example",))
    st = run(cfg, msg, tmp_path).statuses[0]
    assert (st.action, st.reason) == ("delivered", f"delivered to command: {script}")
    text = out.read_text()
    first, rest = text.split("\n", 1)
    assert first == "prog@mx.test.example a@example.org prog"
    assert rest.startswith("From a@example.org ")
    assert "Delivered-To: prog@mx.test.example\n" in rest
    assert "\nFrom the start\n" in rest  # no quoting for commands


def test_command_exit_75_defers_and_67_bounces(tmp_path):
    extra = aliases(tmp_path, 'soft: "|echo busy; exit 75"\nhard: "|exit 67"\n')
    _, cfg, msg = setup(tmp_path, extra, ("soft@mx.test.example", "hard@mx.test.example"))
    soft, hard = run(cfg, msg, tmp_path).statuses
    assert (soft.action, soft.dsn) == ("delayed", "4.3.0")
    assert soft.reason == 'Command died with status 75: "echo busy; exit 75". Command output: busy'
    assert (hard.action, hard.dsn) == ("failed", "5.1.1")


def test_command_output_status_code_wins(tmp_path):
    extra = aliases(tmp_path, 'x: "|echo 4.2.2 over quota; exit 1"\n')
    _, cfg, msg = setup(tmp_path, extra, ("x@mx.test.example",))
    st = run(cfg, msg, tmp_path).statuses[0]
    assert (st.action, st.dsn) == ("delayed", "4.2.2")


def test_command_time_limit_defers(tmp_path):
    extra = aliases(tmp_path, 'slow: "|sleep 30"\n') + "command_time_limit = 1s\n"
    _, cfg, msg = setup(tmp_path, extra, ("slow@mx.test.example",))
    st = run(cfg, msg, tmp_path).statuses[0]
    assert (st.action, st.reason) == ("delayed", 'Command time limit exceeded: "sleep 30"')


def test_include_file_expands_and_restricts_commands(tmp_path):
    inc = tmp_path / "members"
    inc.write_text(f"# members\n{tmp_path / 'inbox'}\n")
    extra = aliases(tmp_path, f"list: :include:{inc}\n") + "allow_mail_to_files = alias, include\n"
    _, cfg, msg = setup(tmp_path, extra, ("list@mx.test.example",))
    assert run(cfg, msg, tmp_path).statuses[0].action == "delivered"
    assert len(mailbox.mbox(str(tmp_path / "inbox"))) == 1
    inc.write_text("|/bin/true\n")
    msg2 = queue_message(cfg, ["list@mx.test.example"])
    st = run(cfg, msg2, tmp_path).statuses[0]
    assert (st.action, st.dsn, st.reason) == ("failed", "5.7.1", "mail to command is restricted")


def test_forward_file_with_keep_copy(tmp_path):
    (tmp_path / "fwd").mkdir()
    (tmp_path / "fwd" / "root").write_text("\\root, elsewhere@example.net\n")
    cdir, cfg, msg = setup(tmp_path)
    st = run(cfg, msg, tmp_path).statuses[0]
    assert st.action == "delivered"
    assert "delivered to mailbox" in st.reason and "forwarded as" in st.reason
    assert len(mailbox.mbox(str(tmp_path / "mail" / "root"))) == 1
    [(_, rcpts, _)] = forwarded(cdir)
    assert rcpts == ["elsewhere@example.net"]


def test_empty_forward_file_means_mailbox(tmp_path):
    (tmp_path / "fwd").mkdir()
    (tmp_path / "fwd" / "root").write_text("\n")
    _, cfg, msg = setup(tmp_path)
    assert run(cfg, msg, tmp_path).statuses[0].reason == "delivered to mailbox"


def test_extension_alias_falls_back_to_user(tmp_path):
    extra = aliases(tmp_path, f"root: {tmp_path / 'r'}\n") + "recipient_delimiter = +\n"
    _, cfg, msg = setup(tmp_path, extra, ("root+tag@mx.test.example",))
    assert run(cfg, msg, tmp_path).statuses[0].action == "delivered"
    [m] = list(mailbox.mbox(str(tmp_path / "r")))
    assert m["Delivered-To"] == "root+tag@mx.test.example"


def test_mailbox_command_gets_message(tmp_path):
    out = tmp_path / "mc"
    _, cfg, msg = setup(tmp_path, f"mailbox_command = cat > {out}\n")
    st = run(cfg, msg, tmp_path).statuses[0]
    assert st.reason == f"delivered to command: cat > {out}"
    assert "Subject: hi" in out.read_text()


def test_mailbox_size_limit_bounces_and_keeps_mailbox(tmp_path):
    _, cfg, msg = setup(tmp_path, "mailbox_size_limit = 300\n")
    run(cfg, msg, tmp_path)
    before = (tmp_path / "mail" / "root").read_bytes()
    msg2 = queue_message(cfg, ["root@mx.test.example"], body=b"Subject: big\n\n" + b"x" * 400)
    st = run(cfg, msg2, tmp_path).statuses[0]
    assert (st.action, st.dsn) == ("failed", "5.2.2")
    assert (tmp_path / "mail" / "root").read_bytes() == before


def test_full_device_defers_430(tmp_path):
    extra = aliases(tmp_path, "full: /dev/full\n")
    _, cfg, msg = setup(tmp_path, extra, ("full@mx.test.example",))
    st = run(cfg, msg, tmp_path).statuses[0]
    assert (st.action, st.dsn) == ("delayed", "4.3.0")
    assert "No space left on device" in st.reason


def test_held_lock_defers(tmp_path):
    _, cfg, msg = setup(tmp_path, "deliver_lock_attempts = 2\n")
    (tmp_path / "mail" / "root.lock").write_text("")
    st = run(cfg, msg, tmp_path).statuses[0]
    assert st.action == "delayed" and "unable to lock" in st.reason


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to change ids")
def test_alias_command_runs_with_default_privs_when_privileged(tmp_path):
    extra = aliases(tmp_path, 'who: "|id -u; exit 77"\n') + "mail_owner = nobody\n"
    _, cfg, msg = setup(tmp_path, extra, ("who@mx.test.example",))
    st = run(cfg, msg, tmp_path).statuses[0]
    assert st.action == "failed"
    assert st.reason.endswith("Command output: 65534")


NEEDS_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to deliver for a user")


def _spool_for_nobody(tmp_path, extra=""):
    """A privileged instance (root, mail_owner nobody) delivering to nobody's spool mbox."""
    # no .forward look-up: it runs as nobody, who cannot reach pytest's private tmp_path
    extra = "mail_owner = nobody\nforward_path =\n" + extra
    _, cfg, msg = setup(tmp_path, extra, ("nobody@mx.test.example",))
    return cfg, msg, tmp_path / "mail" / "nobody"


@NEEDS_ROOT
def test_a_new_spool_mailbox_belongs_to_its_recipient(tmp_path):
    cfg, msg, box = _spool_for_nobody(tmp_path)
    assert run(cfg, msg, tmp_path).statuses[0].action == "delivered"
    assert os.stat(box).st_uid == 65534 and os.stat(box).st_nlink == 1


@NEEDS_ROOT
@pytest.mark.parametrize("strict", ["yes", "no"])
def test_a_spool_mailbox_another_user_owns(tmp_path, strict):
    """strict_mailbox_ownership = yes (Postfix's default) defers with 4.2.0 and a hint; no
    delivers anyway."""
    cfg, msg, box = _spool_for_nobody(tmp_path, f"strict_mailbox_ownership = {strict}\n")
    box.write_bytes(b"")  # root's, not nobody's: not one this delivery made
    st = run(cfg, msg, tmp_path).statuses[0]
    if strict == "yes":
        assert (st.action, st.dsn) == ("delayed", "4.2.0")
        assert st.reason == f"destination {box} is not owned by recipient"
        assert "strict_mailbox_ownership = no" in (tmp_path / "maillog").read_text()
        assert box.read_bytes() == b""
    else:
        assert st.action == "delivered" and box.read_bytes().startswith(b"From a@example.org ")
    assert os.stat(box).st_uid == 0  # never given away


@NEEDS_ROOT
def test_a_spool_mailbox_with_two_hard_links_is_deferred(tmp_path):
    cfg, msg, box = _spool_for_nobody(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_bytes(b"keep\n")
    os.chown(elsewhere, 65534, 65534)
    os.link(elsewhere, box)
    st = run(cfg, msg, tmp_path).statuses[0]
    assert (st.action, st.dsn) == ("delayed", "4.2.0") and "2 hard links" in st.reason
    assert elsewhere.read_bytes() == b"keep\n"


def test_split_recipient_extension_and_owner_special():
    r = split_recipient("Joe+Tag@Example.COM", "+")
    assert (r.local, r.user, r.extension, r.domain) == ("joe+tag", "joe", "Tag", "example.com")
    assert split_recipient("owner-list@x", "-").user == "owner-list"
    assert split_recipient("list-request@x", "-").user == "list-request"
    assert split_recipient("a-b@x", "-").user == "a"


def test_verify_mode_reports_where_mail_would_go_and_writes_nothing(tmp_path):
    from mta.common.deliver_request import REQ_FLAG_VERIFY
    from mta.local import verify

    extra = aliases(tmp_path, "staff: root, other@far.example\n")
    cdir, cfg, msg = setup(
        tmp_path,
        extra,
        rcpts=("staff@mx.test.example", "root@mx.test.example", "nosuchuser@mx.test.example"),
    )
    req = request_for(msg, HOST, transport="local", flags=REQ_FLAG_VERIFY)
    result = run_agent(deliver, cfg, req, tmp_path, verify=verify)
    got = {
        st.address.split("@")[0]: (st.action, st.status_word, st.reason) for st in result.statuses
    }
    assert got["staff"] == ("delivered", "deliverable", "aliased to root, other@far.example")
    assert got["root"] == ("delivered", "deliverable", "delivers to mailbox")
    assert got["nosuchuser"] == ("failed", "undeliverable", 'unknown user: "nosuchuser"')
    assert os.listdir(tmp_path / "mail") == []  # no mailbox was written
    assert forwarded(cdir) == []  # and nothing was forwarded
    logs = [os.path.join(cfg.get("queue_directory"), d) for d in ("bounce", "defer")]
    assert not [f for d in logs for _, _, fs in os.walk(d) for f in fs]  # no bounce log
