"""Our maillog is read by a log tool made for Postfix: Debian's pflogsumm."""

import re
import shutil
import smtplib
import subprocess

import pytest

from tests.support.instance import SmtpdThread, make_instance

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(shutil.which("pflogsumm") is None, reason="pflogsumm not installed"),
]


def test_pflogsumm_counts_received_and_rejected(tmp_path):
    cdir = make_instance(tmp_path)
    server = SmtpdThread(cdir)
    try:
        for _ in range(3):
            with smtplib.SMTP("127.0.0.1", server.port) as s:
                s.sendmail(
                    "a@sender.example", ["user@mx.test.example"], b"Subject: x\r\n\r\nhi\r\n"
                )
        with smtplib.SMTP("127.0.0.1", server.port, source_address=("127.0.0.2", 0)) as s:
            s.ehlo("outside.example")
            s.mail("a@outside.example")
            assert s.rcpt("victim@elsewhere.example")[0] == 454
    finally:
        server.close()
    report = subprocess.run(
        ["pflogsumm", "--syslog-name=mta", str(tmp_path / "maillog")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert re.search(r"^\s+3\s+received$", report, re.M), report
    assert re.search(r"^\s+1\s+rejected", report, re.M), report
