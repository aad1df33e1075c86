"""The sendmail command: flags applications use, maildrop files, exit codes."""

import os
import subprocess

import pytest

from mta.queue.queue_file import iter_content, read_queue_file
from tests.support.instance import make_instance
from tests.support.sendmail import SENDMAIL, maildrop, sendmail

pytestmark = pytest.mark.interop


def test_recipients_on_the_command_line(cdir):
    r = sendmail(
        cdir,
        "-f",
        "me@here.example",
        "-F",
        "Me Myself",
        "u@there.example",
        stdin=b"Subject: x\n\nbody\n",
    )
    assert r.returncode == 0, r.stderr
    (path,) = maildrop(cdir)
    msg = read_queue_file(path)
    assert (msg.sender, msg.full_name) == ("me@here.example", "Me Myself")
    assert [x.address for x in msg.recipients] == ["u@there.example"]
    assert list(iter_content(path)) == [b"Subject: x", b"", b"body"]


def test_dot_line_ends_input_unless_i(cdir):
    sendmail(cdir, "a@x.example", stdin=b"Subject: x\n\nbefore\n.\nafter\n")
    sendmail(cdir, "-oi", "a@x.example", stdin=b"Subject: y\n\nbefore\n.\nafter\n")
    first, second = maildrop(cdir)
    assert list(iter_content(first))[-1] == b"before"
    assert list(iter_content(second))[-2:] == [b".", b"after"]


def test_t_extracts_recipients_and_removes_bcc(cdir):
    message = (
        b"To: A <a@x.example>, b@y.example\nCc: c@z.example\n"
        b"Bcc: hidden@w.example\n  , also@w.example\nSubject: t\n\nbody\n"
    )
    r = sendmail(cdir, "-t", "-i", "extra@v.example", stdin=message)
    assert r.returncode == 0, r.stderr
    (path,) = maildrop(cdir)
    assert [x.address for x in read_queue_file(path).recipients] == [
        "extra@v.example",
        "a@x.example",
        "b@y.example",
        "c@z.example",
        "hidden@w.example",
        "also@w.example",
    ]
    content = b"\n".join(iter_content(path))
    assert b"Bcc" not in content and b"hidden" not in content


def test_t_prefers_resent_headers(cdir):
    message = b"To: old@x.example\nResent-To: new@x.example\n\nbody\n"
    sendmail(cdir, "-t", stdin=message)
    (path,) = maildrop(cdir)
    assert [x.address for x in read_queue_file(path).recipients] == ["new@x.example"]


def test_no_recipients_is_a_usage_error(cdir):
    r = sendmail(cdir, "-t", stdin=b"Subject: none\n\nbody\n")
    assert r.returncode == 64
    assert b"no recipient addresses found in message header" in r.stderr
    assert maildrop(cdir) == []


def test_dsn_options(cdir):
    r = sendmail(
        cdir, "-N", "success,delay", "-R", "hdrs", "-V", "env-1", "a@x.example", stdin=b"\n"
    )
    assert r.returncode == 0, r.stderr
    msg = read_queue_file(maildrop(cdir)[0])
    assert msg.recipients[0].notify == 2 | 8
    assert (msg.attrs["ret"], msg.attrs["envid"]) == ("HDRS", "env-1")


def test_ignored_sendmail_options_are_accepted(cdir):
    r = sendmail(cdir, "-oem", "-odb", "-i", "-n", "-bm", "a@x.example", stdin=b"x\n")
    assert r.returncode == 0, r.stderr


def test_qs_is_not_implemented_as_in_postfix(cdir):
    r = sendmail(cdir, "-qSx.example")
    assert r.returncode == 69
    assert r.stderr.startswith(b"sendmail: fatal:") and b"not implemented" in r.stderr


def test_bv_queues_a_verify_request_and_reads_no_message(cdir):
    from mta.queue.rec_type import QF_TRACE, QF_VERIFY_USER

    r = sendmail(cdir, "-bv", "-f", "me@here.example", "a@x.example", stdin=b"Subject: no\n\n")
    assert r.returncode == 0, r.stderr
    (path,) = maildrop(cdir)
    msg = read_queue_file(path)
    assert msg.flags & QF_VERIFY_USER and msg.flags & QF_TRACE
    assert (msg.sender, [x.address for x in msg.recipients]) == ("me@here.example", ["a@x.example"])
    assert b"Subject: no" not in b"\n".join(iter_content(path))


def test_bv_without_recipients_is_a_usage_error(cdir):
    r = sendmail(cdir, "-bv")
    assert r.returncode == 64 and b"no recipient addresses found" in r.stderr


@pytest.mark.parametrize("flag", ["-q", "-q1h"])
def test_queue_run_of_a_stopped_system_says_it_is_down(cdir, flag):
    r = sendmail(cdir, flag)
    assert r.returncode == 69
    assert b"mail system is down" in r.stderr


def test_unknown_option_is_a_usage_error(cdir):
    r = sendmail(cdir, "-Z", "a@x.example")
    assert r.returncode == 64 and b"usage: sendmail" in r.stderr


def test_missing_config_dir_is_a_config_error(tmp_path):
    r = subprocess.run(
        [*SENDMAIL, "-C", str(tmp_path / "nope"), "a@x.example"], input=b"x\n", capture_output=True
    )
    assert r.returncode == 78 and b"no such configuration directory" in r.stderr


def test_unwritable_maildrop_leaves_nothing_and_fails(cdir):
    if os.getuid() == 0:
        pytest.skip("root writes anywhere")
    os.chmod(cdir.parent / "spool" / "maildrop", 0o500)
    r = sendmail(cdir, "a@x.example", stdin=b"x\n")
    assert r.returncode == 73


def test_works_while_the_mail_system_is_stopped(cdir):
    # nothing listens on public/pickup; the file simply waits in maildrop
    r = sendmail(cdir, "a@x.example", stdin=b"x\n")
    assert r.returncode == 0 and len(maildrop(cdir)) == 1


def test_message_over_the_size_limit_is_refused_at_once(cdir):
    with open(cdir / "main.cf", "a") as f:
        f.write("message_size_limit = 100\n")
    r = sendmail(cdir, "a@x.example", stdin=b"Subject: big\n\n" + b"x" * 500 + b"\n")
    assert r.returncode == 65 and b"message file too big" in r.stderr
    assert maildrop(cdir) == []


def test_bp_lists_the_queue_like_mailq(cdir):
    assert sendmail(cdir, "a@x.example", stdin=b"Subject: hi\n\nbody\n").returncode == 0
    (qid,) = [os.path.basename(p) for p in maildrop(cdir)]
    r = sendmail(cdir, "-bp")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.decode().splitlines()
    assert lines[0].startswith("----Queue ID-----")
    assert lines[1].startswith(qid + " ") and lines[2].strip() == "a@x.example"
    assert lines[-1] == "-- 0 Kbytes in 1 Request."


def test_v_asks_for_a_delivery_report(cdir):
    from mta.queue.rec_type import QF_TRACE

    r = sendmail(cdir, "-v", "a@x.example", stdin=b"Subject: v\n\nbody\n")
    assert r.returncode == 0, r.stderr
    assert read_queue_file(maildrop(cdir)[0]).flags & QF_TRACE


BS_SCRIPT = (
    b"EHLO local.example\r\nMAIL FROM:<me@x.example>\r\nRCPT TO:<you@y.example>\r\n"
    b"DATA\r\nSubject: bs\r\n\r\nhi\r\n.\r\nQUIT\r\n"
)


def run_bs(cdir, tmp_path, stdin_kind: str, stdout_kind: str) -> bytes:
    """sendmail -bs with standard input and output of the kinds named; what it wrote."""
    script = tmp_path / "script"
    script.write_bytes(BS_SCRIPT)
    out_file = tmp_path / "replies"
    master = None
    if stdout_kind == "file":
        stdout = open(out_file, "wb")
    elif stdout_kind == "devnull":
        stdout = open(os.devnull, "wb")
    elif stdout_kind == "tty":
        master, slave = os.openpty()
        stdout = os.fdopen(slave, "wb")
    else:
        stdout = subprocess.PIPE
    stdin = open(script, "rb") if stdin_kind == "file" else None
    try:
        r = subprocess.run(
            [*SENDMAIL, "-C", str(cdir), "-bs"],
            stdin=stdin,
            stdout=stdout,
            stderr=subprocess.PIPE,
            input=None if stdin_kind == "file" else BS_SCRIPT,
            timeout=30,
        )
    finally:
        if stdin is not None:
            stdin.close()
        if stdout is not subprocess.PIPE:
            stdout.close()
    assert r.returncode == 0, r.stderr
    assert b"Traceback" not in r.stderr
    if stdout_kind == "file":
        return out_file.read_bytes()
    if stdout_kind == "tty":
        data = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO once the other end is closed and drained
                break
            if not chunk:
                break
            data += chunk
        os.close(master)
        return data
    return r.stdout or b""


@pytest.mark.parametrize("stdin_kind", ["pipe", "file"])
@pytest.mark.parametrize("stdout_kind", ["pipe", "file", "tty", "devnull"])
def test_bs_speaks_smtp_whatever_stdin_and_stdout_are(cdir, tmp_path, stdin_kind, stdout_kind):
    replies = run_bs(cdir, tmp_path, stdin_kind, stdout_kind)
    if stdout_kind != "devnull":
        assert replies.startswith(b"220 mx.test.example ESMTP")
        assert b"\n250 2.0.0 Ok: queued as " in replies
        assert replies.rstrip().endswith(b"221 2.0.0 Bye")
    (path,) = maildrop(cdir)
    msg = read_queue_file(path)
    assert [x.address for x in msg.recipients] == ["you@y.example"]
    assert b"hi" in list(iter_content(path))


def test_bs_vrfy_does_no_recipient_lookup(tmp_path):
    # stand-alone, as Postfix's sendmail -bs: the user's program gets 252,
    # whatever local_recipient_maps would say at the SMTP port
    cdir = make_instance(tmp_path, "local_recipient_maps = inline:{known=yes}\n")
    r = subprocess.run(
        [*SENDMAIL, "-C", str(cdir), "-bs"],
        input=b"EHLO local.example\r\nVRFY stranger@mx.test.example\r\nQUIT\r\n",
        capture_output=True,
        timeout=30,
    )
    assert b"\r\n252 2.0.0 stranger@mx.test.example\r\n" in r.stdout, r.stdout


def test_bs_offers_no_starttls_even_where_smtpd_does(tmp_path):
    # a pipe cannot carry TLS: stand-alone mode ignores smtpd_tls_security_level, as Postfix
    cdir = make_instance(
        tmp_path, f"smtpd_tls_security_level = may\nsmtpd_tls_cert_file = {tmp_path}/none.pem\n"
    )
    r = subprocess.run(
        [*SENDMAIL, "-C", str(cdir), "-bs"],
        input=b"EHLO local.example\r\nSTARTTLS\r\nQUIT\r\n",
        capture_output=True,
        timeout=30,
    )
    assert b"250-PIPELINING" in r.stdout and b"STARTTLS\r\n" not in r.stdout.split(b"502")[0]
    assert b"\r\n502 5.5.1 Error: command not implemented\r\n" in r.stdout, r.stdout
    assert b"TLS" not in (tmp_path / "maillog").read_bytes()
