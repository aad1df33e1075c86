"""After-queue content filters under the real master, set up as Postfix's FILTER_README
shows them: the "simple" filter (a pipe service running a shell script that adds a
header and reinjects with sendmail) and the "advanced" one (the smtp client hands the
message to an SMTP filter, here aiosmtpd, which sends it back to a second smtpd with
content_filter off; XFORWARD carries the original client through)."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import smtplib
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

from tests.support.running import RELAY_MAIN, ROOT, Instance, free_port, wait_for
from tests.unit.smtp.peers import sink

pytestmark = [pytest.mark.interop, pytest.mark.timeout(180)]

FILTER_SCRIPT = """#!/bin/sh
# FILTER_README's simple content filter: add a header, give the message back
PYTHONPATH={root}
MTA_NO_EXTENSIONS={pure}
export PYTHONPATH MTA_NO_EXTENSIONS
{{ printf 'X-Simple-Filter: passed\\n'; cat; }} |
    exec {python} -m mta.cli.sendmail -C {cdir} -G -i "$@"
"""


def received(handler, subject: str) -> list:
    return [m for m in handler.messages if f"Subject: {subject}".encode() in m[2]]


def submit(port: int, rcpts: list[str], subject: str, sender: str = "s@client.example"):
    with smtplib.SMTP("127.0.0.1", port, timeout=20) as s:
        s.ehlo("client.example")
        s.sendmail(sender, rcpts, f"Subject: {subject}\r\n\r\nbody\r\n".encode())


# ---------------------------------------------------------------- the simple filter


def filter_runner() -> tuple[str, str, str]:
    """(pipe user= argument, python, MTA_NO_EXTENSIONS) for the filter script; skips when
    the filter user cannot run a Python that imports mta."""
    if os.geteuid() != 0:
        return "", sys.executable, ""
    runuser = shutil.which("runuser")
    if runuser is None:
        pytest.skip("runuser is missing: cannot check what user nobody may run")
    for python, pure in ((sys.executable, ""), ("/usr/bin/python3", "1")):
        env = dict(os.environ, PYTHONPATH=ROOT, MTA_NO_EXTENSIONS=pure)
        r = subprocess.run(
            [runuser, "-u", "nobody", "--", python, "-c", "import mta.cli.sendmail"],
            capture_output=True,
            env=env,
            cwd="/",
        )
        if r.returncode == 0:
            return "user=nobody", python, pure
    pytest.skip("user nobody cannot run a Python that imports mta (the filter's sendmail)")


@pytest.fixture(scope="module")
def simple():
    user, python, pure = filter_runner()
    # pytest's tmp_path is below a 0700 directory: the filter user could not reach it
    top = Path(tempfile.mkdtemp(prefix="mta-filter-"))
    top.chmod(0o755)
    ctl, handler = sink()
    port = free_port()
    script = top / "filter.sh"
    script.write_text(FILTER_SCRIPT.format(root=ROOT, pure=pure, python=python, cdir=top / "etc"))
    script.chmod(0o755)
    inst = Instance(
        top,
        f"127.0.0.1:{port} inet n - n - - smtpd -o content_filter=filter:dummy\n"
        "qmgr fifo n - n 300 1 qmgr\n"
        "cleanup unix n - n - 0 cleanup\n"
        "pickup unix n - n 1 1 pickup\n"
        "smtp unix - - n - - smtp\n"
        f"filter unix - n n - 10 pipe flags=Rq {user} null_sender= "
        f"argv={script} -f ${{sender}} -- ${{recipient}}\n",
        {
            **RELAY_MAIN,
            "transport_maps": f"inline:{{remote.example=smtp:[127.0.0.1]:{ctl.port}}}",
        },
    )
    inst.port = port
    r = inst.mta("start")
    assert r.returncode == 0, r.stderr
    if user:
        # no setgid postdrop: the maildrop the filter user reinjects into is open to it
        # (sticky, as Postfix's world-writable maildrop was)
        os.chmod(os.path.join(inst.queue, "maildrop"), 0o1777)
    try:
        yield inst, handler
    finally:
        inst.stop()
        ctl.stop()
        shutil.rmtree(top, ignore_errors=True)


def test_simple_filter_sees_every_message_once_and_reinjects_it(simple):
    inst, handler = simple
    rcpts = ["a@remote.example", "b@remote.example"]
    submit(inst.port, rcpts, "simple filter")
    assert wait_for(lambda: received(handler, "simple filter"), 60), inst.log()
    (msg,) = received(handler, "simple filter")
    sender, got_rcpts, data, _ = msg
    assert sender == "s@client.example"
    assert sorted(got_rcpts) == rcpts  # the original envelope, through the filter
    assert data.count(b"X-Simple-Filter: passed") == 1  # no loop
    log = inst.log()
    # the first queue file went to the filter, one delivery for both recipients
    assert len(re.findall(r"to=<[ab]@remote\.example>, relay=filter, .*status=sent", log)) == 2
    first = re.search(r"(\w+): to=<a@remote\.example>, relay=filter", log).group(1)
    assert not re.search(rf"{first}: to=<a@remote\.example>, relay=127", log)


def test_simple_filter_keeps_the_null_sender(simple):
    inst, handler = simple
    submit(inst.port, ["c@remote.example"], "null sender", sender="")
    assert wait_for(lambda: received(handler, "null sender"), 60), inst.log()
    (msg,) = received(handler, "null sender")
    assert msg[0] == "<>" or msg[0] == ""
    assert msg[2].count(b"X-Simple-Filter: passed") == 1


# ---------------------------------------------------------------- the advanced filter


class XforwardSMTP(SMTP):
    """aiosmtpd that takes XFORWARD, as a filter that passes it on does."""

    async def smtp_XFORWARD(self, arg):
        if not arg:
            await self.push("501 5.5.4 Syntax: XFORWARD attribute=value...")
            return
        words = getattr(self.session, "xforward", [])
        self.session.xforward = words + arg.split()
        await self.push("250 2.0.0 Ok")


class ScanHandler:
    """Adds a header and sends the message back to the reinjection smtpd."""

    def __init__(self, back_port: int) -> None:
        self.back_port = back_port
        self.seen: list[tuple[str, list[str], list[str]]] = []

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        return [
            *responses[:-1],
            "250-XFORWARD NAME ADDR PROTO HELO SOURCE PORT IDENT",
            responses[-1],
        ]

    async def handle_DATA(self, server, session, envelope):
        xforward = getattr(session, "xforward", [])
        session.xforward = []
        self.seen.append((envelope.mail_from, list(envelope.rcpt_tos), xforward))
        content = b"X-Advanced-Filter: scanned\r\n" + envelope.original_content

        def reinject() -> str:
            with smtplib.SMTP("127.0.0.1", self.back_port, timeout=20) as s:
                s.ehlo("scanner.example")
                if xforward and s.has_extn("xforward"):
                    code, text = s.docmd("XFORWARD", " ".join(xforward))
                    if code != 250:
                        return f"451 4.3.0 XFORWARD failed: {code} {text.decode()}"
                s.sendmail(envelope.mail_from, envelope.rcpt_tos, content)
            return "250 2.0.0 Ok: filtered and queued"

        return await asyncio.get_running_loop().run_in_executor(None, reinject)


class ScanController(Controller):
    def factory(self):
        return XforwardSMTP(self.handler)


@pytest.fixture(scope="module")
def advanced(tmp_path_factory):
    top = tmp_path_factory.mktemp("advanced")
    ctl, handler = sink()
    port, scan_port, back_port = free_port(), free_port(), free_port()
    (top / "header_checks").write_text("/^Subject: checked/ REJECT no such subjects\n")
    inst = Instance(
        top,
        f"127.0.0.1:{port} inet n - n - - smtpd\n"
        "qmgr fifo n - n 300 1 qmgr\n"
        "cleanup unix n - n - 0 cleanup\n"
        "smtp unix - - n - - smtp\n"
        "scan unix - - n - 10 smtp\n"
        "    -o smtp_send_xforward_command=yes\n"
        "    -o disable_mime_output_conversion=yes\n"
        f"127.0.0.1:{back_port} inet n - n - - smtpd\n"
        "    -o content_filter=\n"
        "    -o receive_override_options=no_unknown_recipient_checks,no_header_body_checks,"
        "no_milters\n"
        "    -o smtpd_helo_restrictions=\n"
        "    -o smtpd_client_restrictions=\n"
        "    -o smtpd_sender_restrictions=\n"
        "    -o smtpd_relay_restrictions=\n"
        "    -o smtpd_recipient_restrictions=permit_mynetworks,reject\n"
        "    -o smtpd_data_restrictions=\n"
        "    -o mynetworks=127.0.0.0/8\n"
        "    -o smtpd_authorized_xforward_hosts=127.0.0.0/8\n",
        {
            **RELAY_MAIN,
            "smtpd_peername_lookup": "no",
            "content_filter": f"scan:[127.0.0.1]:{scan_port}",
            "header_checks": f"regexp:{top}/header_checks",
            "transport_maps": f"inline:{{remote.example=smtp:[127.0.0.1]:{ctl.port}}}",
            "scan_destination_recipient_limit": "1000",
            "minimal_backoff_time": "2s",
            "maximal_backoff_time": "4s",
            "queue_run_delay": "2s",
        },
    )
    inst.port = port
    scan = ScanHandler(back_port)
    inst.scan_port = scan_port
    inst.scan = scan
    r = inst.mta("start")
    assert r.returncode == 0, r.stderr
    inst.scanner = ScanController(scan, hostname="127.0.0.1", port=scan_port)
    inst.scanner.start()
    try:
        yield inst, handler
    finally:
        if inst.scanner is not None:
            inst.scanner.stop()
        inst.stop()
        ctl.stop()


def test_advanced_filter_scans_and_the_log_keeps_the_original_client(advanced):
    inst, handler = advanced
    rcpts = ["d@remote.example", "e@remote.example"]
    submit(inst.port, rcpts, "advanced filter")
    assert wait_for(lambda: received(handler, "advanced filter"), 60), inst.log()
    (msg,) = received(handler, "advanced filter")
    assert sorted(msg[1]) == rcpts
    assert msg[2].count(b"X-Advanced-Filter: scanned") == 1  # once: no loop
    # the scanner got the whole message once, with the original client in XFORWARD
    mail_from, scanned_rcpts, xforward = next(s for s in inst.scan.seen if s[1] == msg[1])
    assert mail_from == "s@client.example"
    assert "ADDR=127.0.0.1" in xforward and "HELO=client.example" in xforward
    log = inst.log()
    # the reinjection smtpd names the original client and the first queue id
    first = re.search(
        r"(\w+): to=<d@remote\.example>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:"
        rf"{inst.scan_port}",
        log,
    ).group(1)
    assert re.search(
        rf"\w+: client=\S+\[127\.0\.0\.1\], orig_queue_id={first}, "
        r"orig_client=unknown\[127\.0\.0\.1\]",
        log,
    ), log
    # the Received: header the reinjection smtpd added names the original HELO
    assert b"Received: from client.example (unknown [127.0.0.1])" in msg[2]


def test_header_checks_run_before_the_filter_only(advanced):
    """no_header_body_checks on the reinjection smtpd: a header the filter adds that
    header_checks would reject passes there, and the first smtpd's checks still run."""
    inst, handler = advanced
    with smtplib.SMTP("127.0.0.1", inst.port, timeout=20) as s:
        s.ehlo("client.example")
        with pytest.raises(smtplib.SMTPDataError) as info:
            s.sendmail("s@client.example", ["f@remote.example"], b"Subject: checked\r\n\r\nb\r\n")
    assert info.value.smtp_code == 550
    # straight to the reinjection port, as the filter would: not checked there
    back = inst.scan.back_port
    with smtplib.SMTP("127.0.0.1", back, timeout=20) as s:
        s.sendmail("s@client.example", ["g@remote.example"], b"Subject: checked too\r\n\r\nb\r\n")
    assert wait_for(lambda: received(handler, "checked too"), 60), inst.log()
    (msg,) = received(handler, "checked too")
    assert b"X-Advanced-Filter" not in msg[2]  # content_filter is off there: no loop


def test_only_the_reinjection_smtpd_offers_xforward(advanced):
    inst, _ = advanced
    with smtplib.SMTP("127.0.0.1", inst.scan.back_port, timeout=20) as s:
        s.ehlo("scanner.example")
        assert s.has_extn("xforward")
    with smtplib.SMTP("127.0.0.1", inst.port, timeout=20) as s:
        s.ehlo("client.example")
        assert not s.has_extn("xforward")  # smtpd_authorized_xforward_hosts is empty there


def test_filter_down_defers_and_never_delivers_unscanned(advanced):
    inst, handler = advanced
    inst.scanner.stop()
    inst.scanner = None
    submit(inst.port, ["h@remote.example"], "while down")
    inst.wait_log(
        r"to=<h@remote\.example>, relay=\S+, .*status=deferred \(connect to "
        rf"127\.0\.0\.1\[127\.0\.0\.1\]:{inst.scan_port}: Connection refused\)",
        30,
    )
    assert not received(handler, "while down")
    assert not re.search(r"to=<h@remote\.example>.*status=sent", inst.log())
    inst.scanner = ScanController(inst.scan, hostname="127.0.0.1", port=inst.scan_port)
    inst.scanner.start()
    inst.mta("flush")
    assert wait_for(lambda: received(handler, "while down"), 60), inst.log()
    (msg,) = received(handler, "while down")
    assert msg[2].count(b"X-Advanced-Filter: scanned") == 1
