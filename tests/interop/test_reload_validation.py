"""mta reload validates first; children run on the configuration the master holds."""

from __future__ import annotations

import os
import re
import signal
import smtplib
import time

import pytest

from tests.support.running import relay_system, wait_for

pytestmark = [pytest.mark.interop, pytest.mark.timeout(90)]

SERVICES = "discard unix - - n - - discard\nproxymap unix - - n - - proxymap\n"


@pytest.fixture
def mail_system(tmp_path):
    inst = relay_system(tmp_path, SERVICES, transport_maps="inline:{ ok.example=discard:kept }")
    r = inst.mta("start")
    assert r.returncode == 0, r.stderr
    yield inst
    inst.stop()


def send(inst, rcpt: str) -> None:
    with smtplib.SMTP("127.0.0.1", inst.port, timeout=10) as s:
        s.sendmail("sender@ok.example", [rcpt], b"Subject: hi\r\n\r\nbody\r\n")


def banner(inst) -> str:
    with smtplib.SMTP(timeout=10) as s:
        _, text = s.connect("127.0.0.1", inst.port)
        return text.decode()


def kill_children(inst, service: str) -> None:
    if service == "smtpd":
        service = f"127.0.0.1:{inst.port}"
    pids = inst.children(service)
    assert pids, f"no {service} process"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: not set(inst.children(service)) & set(pids), 10)


def delivered(inst, rcpt: str, timeout: float = 15) -> None:
    inst.wait_log(rf"to=<{re.escape(rcpt)}>.*status=sent \(kept\)", timeout)


def edit_and_reload(inst, setting: str, returncode: int) -> str:
    """mta conf -e setting (which must succeed), then mta reload, which must exit with
    returncode; returns what reload wrote to stderr."""
    assert inst.mta("conf", "-e", setting).returncode == 0
    r = inst.mta("reload")
    assert r.returncode == returncode, r.stderr
    return r.stderr


def test_reload_with_a_bad_value_is_refused_and_mail_still_flows(mail_system):
    inst = mail_system
    send(inst, "first@ok.example")
    delivered(inst, "first@ok.example")
    stderr = edit_and_reload(inst, "message_size_limit=banana", 1)
    assert re.search(
        r"^mta reload: fatal: .*/main\.cf, line \d+: parameter message_size_limit: "
        r'bad size value "banana"',
        stderr,
        re.M,
    ), stderr
    assert "refreshing" not in stderr
    log = inst.wait_log(r"mta-script\[\d+\]: error: .*message_size_limit")
    assert "reload -- version" not in log  # the master was not signalled
    # new processes read the bad main.cf and run on the master's snapshot
    kill_children(inst, "smtpd")
    start = time.monotonic()
    send(inst, "second@ok.example")
    delivered(inst, "second@ok.example")
    assert time.monotonic() - start < 10
    log = inst.log()
    assert re.search(
        r"mta/smtpd\[\d+\]: warning: .*/main\.cf, line \d+: parameter message_size_limit: "
        r'bad size value "banana".*; running on the configuration the master validated last',
        log,
    ), log
    assert "throttling" not in log
    assert "Traceback" not in log


def test_a_valid_edit_reaches_new_processes_without_reload(mail_system):
    inst = mail_system
    assert "ESMTP" in banner(inst)
    assert inst.mta("conf", "-e", "smtpd_banner=$myhostname edited banner").returncode == 0
    kill_children(inst, "smtpd")
    assert banner(inst) == "mx.test.example edited banner"
    assert "running on the configuration" not in inst.log()


def test_an_unknown_restriction_falls_back_without_a_traceback(mail_system):
    inst = mail_system
    send(inst, "first@ok.example")
    stderr = edit_and_reload(inst, "smtpd_recipient_restrictions=permit_mynetworks reject_bogus", 1)
    assert re.search(
        r"mta reload: fatal: .*/main\.cf, line \d+: parameter smtpd_recipient_restrictions: "
        r'unknown restriction "reject_bogus"',
        stderr,
    ), stderr
    kill_children(inst, "smtpd")
    send(inst, "third@ok.example")
    delivered(inst, "third@ok.example")
    log = inst.log()
    assert 'unknown restriction "reject_bogus"; running on the configuration' in log
    assert "throttling" not in log and "Traceback" not in log


def test_reload_with_a_typo_warns_and_goes_ahead(mail_system):
    inst = mail_system
    stderr = edit_and_reload(inst, "mesage_size_limit=100", 0)
    assert re.search(
        r"mta reload: warning: .*/main\.cf, line \d+: unused parameter: mesage_size_limit=100",
        stderr,
    ), stderr
    inst.wait_log(r"mta/master\[\d+\]: reload -- version")


def test_a_new_proxymap_runs_on_the_snapshot_after_a_refused_reload(tmp_path):
    # smtpd asks proxymap for relay_recipient_maps at each RCPT TO, as in the report
    inst = relay_system(
        tmp_path,
        SERVICES,
        transport_maps="inline:{ ok.example=discard:kept }",
        relay_domains="ok.example",
        relay_recipient_maps="proxy:inline:{ {a@ok.example=x}, {b@ok.example=x} }",
    )
    try:
        assert inst.mta("start").returncode == 0
        send(inst, "a@ok.example")
        delivered(inst, "a@ok.example")
        stderr = edit_and_reload(inst, "ipc_timeout=never", 1)
        assert "parameter ipc_timeout" in stderr, stderr
        kill_children(inst, "proxymap")
        kill_children(inst, "smtpd")
        with smtplib.SMTP("127.0.0.1", inst.port, timeout=10) as s:
            s.ehlo()
            s.mail("sender@ok.example")
            assert s.rcpt("nobody@ok.example")[0] == 550  # the table is still asked
        send(inst, "b@ok.example")
        delivered(inst, "b@ok.example")
        log = inst.log()
        assert re.search(
            r"mta/proxymap\[\d+\]: warning: .*parameter ipc_timeout: .*"
            r"running on the configuration the master validated last",
            log,
        ), log
        assert "throttling" not in log and "Traceback" not in log
    finally:
        inst.stop()
