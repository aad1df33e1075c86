"""smtpd SMTP AUTH with the built-in backend (smtpd_sasl_type = mta): smtplib and raw
sockets against an in-process smtpd, users made with the real "mta sasl" command."""

from __future__ import annotations

import base64
import json
import os
import shutil
import smtplib
import subprocess
import sys

import pytest

from mta.config import Config
from mta.config.errors import ConfigError
from mta.config.validate import config_problems
from mta.queue.queue_file import iter_content, read_queue_file
from mta.smtpd.checks import SmtpdChecks
from tests.support.instance import RawClient, SmtpdThread, greet, incoming_files, make_instance
from tests.support.running import ROOT, wait_for
from tests.support.tls import client_context, self_signed

pytestmark = pytest.mark.interop

AUTH_MAIN = (
    "smtpd_sasl_auth_enable = yes\n"
    "smtpd_sasl_type = mta\n"
    "smtpd_sasl_path = sasl_users\n"
    "mynetworks = 192.0.2.0/24\n"  # the test client is not trusted by address
    "mydestination = mx.test.example\n"
    "smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated,"
    " reject_unauth_destination\n"
)
MESSAGE = b"Subject: auth\r\nFrom: joe@sender.example\r\n\r\nAuthenticated.\r\n"


def mta_sasl(cdir, *args: str, password: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run(
        [sys.executable, "-m", "mta", "sasl", "-c", str(cdir), *args],
        input=None if password is None else password + "\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


@pytest.fixture
def start(tmp_path):
    """start(main_cf, users={name: password}) -> a running in-process smtpd."""
    servers = []

    def run(main_cf: str = AUTH_MAIN, users: dict | None = None) -> SmtpdThread:
        cdir = make_instance(tmp_path, main_cf)
        for user, password in (users or {"joe": "s3cret pass"}).items():
            r = mta_sasl(cdir, "add", user, password=password)
            assert r.returncode == 0, r.stderr
        server = SmtpdThread(cdir)
        server.cdir = cdir
        server.maillog = tmp_path / "maillog"
        servers.append(server)
        return server

    yield run
    for server in servers:
        server.close()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def plain(user: str, password: str) -> bytes:
    """An AUTH PLAIN command line with its initial response."""
    return b"AUTH PLAIN " + base64.b64encode(f"\0{user}\0{password}".encode()) + b"\r\n"


def test_ehlo_offers_plain_and_login(start):
    smtpd = start()
    with smtplib.SMTP("127.0.0.1", smtpd.port) as s:
        s.ehlo("client.example")
        assert s.esmtp_features["auth"].split() == ["PLAIN", "LOGIN"]
        assert "auth=plain" not in s.esmtp_features


def test_broken_sasl_auth_clients_adds_the_old_form(start):
    smtpd = start(AUTH_MAIN + "broken_sasl_auth_clients = yes\n")
    client = RawClient(smtpd.port)
    reply = greet(client)
    assert "250-AUTH PLAIN LOGIN\n250-AUTH=PLAIN LOGIN\n250-ENHANCEDSTATUSCODES" in reply


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_smtplib_login_relays_and_marks_the_message(start, mech):
    smtpd = start(AUTH_MAIN + "smtpd_sasl_authenticated_header = yes\n")
    with smtplib.SMTP("127.0.0.1", smtpd.port) as s:
        s.ehlo("client.example")
        s.user, s.password = "joe", "s3cret pass"
        code, text = s.auth(mech, getattr(s, f"auth_{mech.lower()}"))
        assert (code, text) == (235, b"2.7.0 Authentication successful")
        s.mail("joe@sender.example", ["AUTH=joe@sender.example"])
        # a foreign domain: relayed for the authenticated client
        assert s.rcpt("someone@elsewhere.example")[0] == 250
        assert s.data(MESSAGE)[0] == 250
    (path,) = incoming_files(smtpd.cdir)
    content = b"\n".join(iter_content(path))
    assert b"\t(Authenticated sender: joe)\n\tby mx.test.example" in content
    assert b" with ESMTPA id " in content
    attrs = read_queue_file(path).attrs
    assert attrs["sasl_method"] == mech and attrs["sasl_username"] == "joe"
    assert attrs["sasl_sender"] == "joe@sender.example"
    assert "received_comment" not in attrs
    assert wait_for(lambda: "client=" in smtpd.maillog.read_text(), 5)
    assert (
        f"client=localhost[127.0.0.1], sasl_method={mech}, sasl_username=joe, "
        "sasl_sender=joe@sender.example" in smtpd.maillog.read_text()
    )


def test_unauthenticated_client_gets_relay_access_denied(start):
    smtpd = start()
    with smtplib.SMTP("127.0.0.1", smtpd.port) as s:
        s.ehlo("client.example")
        s.mail("joe@sender.example")
        code, text = s.rcpt("someone@elsewhere.example")
        assert (code, text) == (554, b"5.7.1 <someone@elsewhere.example>: Relay access denied")


def test_wrong_password_gets_535_and_a_warning(start):
    smtpd = start()
    client = RawClient(smtpd.port)
    greet(client)
    client.send(plain("joe", "Guess3d"))
    assert client.reply() == "535 5.7.8 Error: authentication failed: authentication failure"
    client.send(b"QUIT\r\n")
    client.reply()
    log = smtpd.maillog.read_text()
    assert (
        "warning: localhost[127.0.0.1]: SASL PLAIN authentication failed: "
        "authentication failure, sasl_username=joe" in log
    )
    assert "Guess3d" not in log


def test_unknown_user_and_unknown_mechanism(start):
    smtpd = start()
    client = RawClient(smtpd.port)
    greet(client)
    client.send(plain("nobody", "s3cret pass"))
    assert client.reply().startswith("535 5.7.8 ")
    client.send(b"AUTH CRAM-MD5\r\n")
    assert (
        client.reply() == "535 5.7.8 Error: authentication failed: Invalid authentication mechanism"
    )


def test_login_exchange_with_challenges_and_empty_initial_response(start):
    smtpd = start()
    client = RawClient(smtpd.port)
    greet(client)
    client.send(b"AUTH LOGIN\r\n")
    assert client.reply() == "334 VXNlcm5hbWU6"  # Username:
    client.send(b64(b"joe").encode() + b"\r\n")
    assert client.reply() == "334 UGFzc3dvcmQ6"  # Password:
    client.send(b64(b"s3cret pass").encode() + b"\r\n")
    assert client.reply() == "235 2.7.0 Authentication successful"
    client.send(b"AUTH PLAIN\r\n")
    assert client.reply() == "503 5.5.1 Error: already authenticated"


def test_plain_without_initial_response_gets_an_empty_challenge(start):
    smtpd = start()
    client = RawClient(smtpd.port)
    greet(client)
    client.send(b"AUTH PLAIN\r\n")
    assert client.reply() == "334 "
    client.send(b64(b"\0joe\0s3cret pass").encode() + b"\r\n")
    assert client.reply() == "235 2.7.0 Authentication successful"


def test_cancel_bad_base64_and_transaction_state(start):
    smtpd = start()
    client = RawClient(smtpd.port)
    greet(client)
    client.send(b"AUTH LOGIN\r\n")
    assert client.reply().startswith("334 ")
    client.send(b"*\r\n")
    assert client.reply() == "501 5.7.0 Authentication aborted"
    client.send(b"AUTH PLAIN !!!notbase64\r\n")
    assert client.reply() == "501 5.5.2 Invalid base64 data in initial response"
    client.send(b"AUTH LOGIN\r\n")
    client.reply()
    client.send(b"%%%\r\n")
    assert client.reply() == "501 5.5.2 Invalid base64 data in continued response"
    client.send(b"AUTH\r\n")
    assert client.reply() == "501 5.5.4 Syntax: AUTH mechanism"
    client.send(b"MAIL FROM:<joe@sender.example>\r\n")
    assert client.reply().startswith("250 ")
    client.send(b"AUTH PLAIN\r\n")
    assert client.reply() == "503 5.5.1 Error: MAIL transaction in progress"
    assert "aborted" in smtpd.maillog.read_text()


def test_a_100k_auth_line_gets_line_too_long_and_the_session_goes_on(start):
    smtpd = start()
    client = RawClient(smtpd.port)
    greet(client)
    client.send(b"AUTH PLAIN " + b"QUFB" * 25600 + b"\r\n")
    assert client.reply() == "500 5.5.0 Error: line too long"
    client.send(plain("joe", "s3cret pass"))
    assert client.reply() == "235 2.7.0 Authentication successful"


def test_a_response_past_smtpd_sasl_response_limit_is_skipped(start):
    smtpd = start(AUTH_MAIN + "smtpd_sasl_response_limit = 100\n")
    client = RawClient(smtpd.port)
    greet(client)
    client.send(b"AUTH LOGIN\r\n")
    client.reply()
    client.send(b"QUFB" * 30000 + b"\r\n")  # 120 KB, one line
    assert client.reply() == "500 5.5.6 SASL response limit exceeded"
    client.send(b"NOOP\r\n")
    assert client.reply() == "250 2.0.0 Ok"


def test_failed_logins_end_at_the_hard_error_limit(start):
    smtpd = start(AUTH_MAIN + "smtpd_hard_error_limit = 5\n")
    client = RawClient(smtpd.port)
    greet(client)
    bad = plain("joe", "guess")
    replies = []
    for _ in range(5):
        client.send(bad)
        replies.append(client.reply())
    assert replies[:4] == ["535 5.7.8 Error: authentication failed: authentication failure"] * 4
    assert replies[4] == "421 4.7.0 mx.test.example Error: too many errors"
    assert client.closed()


def test_tls_auth_only_hides_auth_before_starttls(start):
    smtpd = start(AUTH_MAIN + "smtpd_tls_auth_only = yes\n")
    client = RawClient(smtpd.port)
    assert "AUTH" not in greet(client)
    client.send(plain("joe", "s3cret pass"))
    assert client.reply() == "504 5.5.4 Encryption required for requested authentication mechanism"


def test_noplaintext_hides_plain_and_login_without_tls(start):
    smtpd = start(AUTH_MAIN + "smtpd_sasl_security_options = noanonymous, noplaintext\n")
    client = RawClient(smtpd.port)
    assert "AUTH" not in greet(client)
    client.send(plain("joe", "s3cret pass"))
    assert (
        client.reply() == "535 5.7.8 Error: authentication failed: Invalid authentication mechanism"
    )


def test_auth_disabled_and_discarded(start):
    smtpd = start(AUTH_MAIN + "smtpd_discard_ehlo_keywords = auth\n")
    client = RawClient(smtpd.port)
    assert "AUTH" not in greet(client)
    client.send(b"AUTH PLAIN\r\n")
    assert client.reply() == "503 5.5.1 Error: authentication not enabled"


def test_local_domain_is_added_to_bare_login_names(start):
    main = AUTH_MAIN + "smtpd_sasl_local_domain = example.org\n"
    smtpd = start(main, users={"ann": "pw one"})
    assert mta_sasl(smtpd.cdir, "list").stdout == "ann@example.org\n"
    with smtplib.SMTP("127.0.0.1", smtpd.port) as s:
        s.ehlo("client.example")
        assert s.login("ann", "pw one")[0] == 235
        s.mail("ann@example.org")
        s.rcpt("x@elsewhere.example")
        s.data(MESSAGE)
    (path,) = incoming_files(smtpd.cdir)
    assert read_queue_file(path).attrs["sasl_username"] == "ann@example.org"


def test_mta_sasl_round_trip(tmp_path):
    cdir = make_instance(tmp_path, AUTH_MAIN)
    assert mta_sasl(cdir, "add", "joe", password="one").returncode == 0
    assert mta_sasl(cdir, "add", "amy", "--scheme", "pbkdf2_sha256", password="two").returncode == 0
    assert mta_sasl(cdir, "list").stdout == "amy\njoe\n"
    listed = json.loads(mta_sasl(cdir, "list", "--json").stdout)
    assert listed == [
        {"user": "amy", "scheme": "pbkdf2_sha256"},
        {"user": "joe", "scheme": "scrypt"},
    ]
    assert mta_sasl(cdir, "check", "joe", password="one").returncode == 0
    bad = mta_sasl(cdir, "check", "joe", password="two")
    assert bad.returncode == 1 and "password does not match" in bad.stderr
    assert mta_sasl(cdir, "add", "joe", password="three").returncode == 0  # a new password
    assert mta_sasl(cdir, "check", "joe", password="three").returncode == 0
    assert mta_sasl(cdir, "delete", "joe").returncode == 0
    assert mta_sasl(cdir, "list").stdout == "amy\n"
    gone = mta_sasl(cdir, "delete", "joe")
    assert gone.returncode == 1 and "no such user: joe" in gone.stderr
    assert mta_sasl(cdir, "add", "bob", password="").returncode == 1  # empty password
    table = cdir / "sasl_users.lmdb"
    assert oct(table.stat().st_mode & 0o777) == "0o600"
    assert b"one" not in table.read_bytes() and b"two" not in table.read_bytes()
    helptext = mta_sasl(cdir, "--help").stdout
    assert "add" in helptext and "delete" in helptext and "list" in helptext


def test_mta_sasl_never_takes_the_password_from_argv(tmp_path):
    cdir = make_instance(tmp_path, AUTH_MAIN)
    r = mta_sasl(cdir, "add", "joe", "secret", password="x")
    assert r.returncode == 2  # an extra argument is a usage error


def test_check_refuses_cyrus_and_bad_security_options(tmp_path):
    cdir = make_instance(
        tmp_path,
        "smtpd_sasl_auth_enable = yes\nsmtpd_sasl_security_options = noanonymous, nosuch\n",
    )
    problems = config_problems(Config(str(cdir)))
    fatal = [str(p) for p in problems if p.fatal]
    assert any("smtpd_sasl_type" in p and "cyrus is not supported" in p for p in fatal)
    assert any("smtpd_sasl_security_options" in p and '"nosuch"' in p for p in fatal)


def test_check_warns_about_a_missing_users_table(tmp_path):
    cdir = make_instance(tmp_path, AUTH_MAIN)
    problems = config_problems(Config(str(cdir)))
    (found,) = [p for p in problems if "smtpd_sasl_path" in str(p)]
    assert not found.fatal and "sasl_users.lmdb" in str(found)


def _owners_table(tmp_path) -> str:
    table = tmp_path / "sender_logins"
    table.write_text("joe@sender.example joe\nboss@sender.example amy, JOE\n@shared.example amy\n")
    return f"texthash:{table}"


def _rcpt_after(client: RawClient, sender: str) -> str:
    client.send(f"MAIL FROM:<{sender}>\r\n".encode())
    assert client.reply().startswith("250 ")
    client.send(b"RCPT TO:<x@mx.test.example>\r\n")
    reply = client.reply()
    client.send(b"RSET\r\n")
    client.reply()
    return reply


def test_reject_sender_login_mismatch(start, tmp_path):
    smtpd = start(
        AUTH_MAIN
        + f"smtpd_sender_login_maps = {_owners_table(tmp_path)}\n"
        + "smtpd_sender_restrictions = reject_sender_login_mismatch\n",
        users={"joe": "pw", "amy": "pw2"},
    )
    anon = RawClient(smtpd.port)
    greet(anon)
    assert _rcpt_after(anon, "joe@sender.example") == (
        "553 5.7.1 <joe@sender.example>: Sender address rejected: not logged in"
    )
    assert _rcpt_after(anon, "someone@else.example").startswith("250 ")  # no owner
    assert _rcpt_after(anon, "").startswith("250 ")  # the null sender
    joe = RawClient(smtpd.port)
    greet(joe)
    joe.send(plain("joe", "pw"))
    assert joe.reply().startswith("235 ")
    assert _rcpt_after(joe, "joe@sender.example").startswith("250 ")
    assert _rcpt_after(joe, "boss@sender.example").startswith("250 ")  # co-owner, any case
    assert _rcpt_after(joe, "amy@shared.example") == (
        "553 5.7.1 <amy@shared.example>: Sender address rejected: not owned by user joe"
    )
    # an address the table does not list is refused to a logged-in client
    assert _rcpt_after(joe, "someone@else.example") == (
        "553 5.7.1 <someone@else.example>: Sender address rejected: not owned by user joe"
    )
    assert "NOQUEUE: reject: RCPT from localhost[127.0.0.1]: 553 5.7.1" in (
        smtpd.maillog.read_text()
    )


def test_known_authenticated_and_unauthenticated_variants(start, tmp_path):
    owners = _owners_table(tmp_path)
    smtpd = start(
        AUTH_MAIN
        + f"smtpd_sender_login_maps = {owners}\n"
        + "smtpd_sender_restrictions = reject_known_sender_login_mismatch\n"
        + "smtpd_recipient_restrictions = reject_authenticated_sender_login_mismatch\n",
        users={"amy": "pw2"},
    )
    amy = RawClient(smtpd.port)
    greet(amy)
    amy.send(plain("amy", "pw2"))
    assert amy.reply().startswith("235 ")
    assert _rcpt_after(amy, "x@shared.example").startswith("250 ")
    # known: refused by both; unknown: passes known_, refused by authenticated_
    assert "not owned by user amy" in _rcpt_after(amy, "joe@sender.example")
    assert "not owned by user amy" in _rcpt_after(amy, "new@else.example")
    anon = RawClient(smtpd.port)
    greet(anon)
    assert "not logged in" in _rcpt_after(anon, "joe@sender.example")


def test_unauthenticated_mismatch_leaves_logged_in_clients_alone(start, tmp_path):
    smtpd = start(
        AUTH_MAIN
        + f"smtpd_sender_login_maps = {_owners_table(tmp_path)}\n"
        + "smtpd_sender_restrictions = reject_unauthenticated_sender_login_mismatch\n",
        users={"amy": "pw2"},
    )
    amy = RawClient(smtpd.port)
    greet(amy)
    amy.send(plain("amy", "pw2"))
    assert amy.reply().startswith("235 ")
    assert _rcpt_after(amy, "joe@sender.example").startswith("250 ")


def test_sender_login_restrictions_need_the_table(tmp_path):
    cdir = make_instance(
        tmp_path, AUTH_MAIN + "smtpd_sender_restrictions = reject_sender_login_mismatch\n"
    )
    with pytest.raises(ConfigError) as caught:
        SmtpdChecks(Config(str(cdir)))
    assert "smtpd_sender_restrictions" in str(caught.value)
    assert "need smtpd_sender_login_maps" in str(caught.value)


def test_check_sasl_access(start, tmp_path):
    table = tmp_path / "sasl_access"
    table.write_text("joe REJECT account suspended\n")
    smtpd = start(
        AUTH_MAIN + f"smtpd_recipient_restrictions = check_sasl_access texthash:{table}\n",
        users={"joe": "pw", "amy": "pw2"},
    )
    for user, password, want in (
        (
            "joe",
            "pw",
            "554 5.7.1 <localhost[127.0.0.1]>: SASL login name rejected: account suspended",
        ),
        ("amy", "pw2", "250 2.1.5 Ok"),
    ):
        client = RawClient(smtpd.port)
        greet(client)
        client.send(plain(user, password))
        assert client.reply().startswith("235 ")
        assert _rcpt_after(client, f"{user}@sender.example") == want


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    """A self-signed server certificate and its key, made with openssl."""
    crt, key = self_signed(tmp_path_factory.mktemp("certs"), "mx.test.example")
    return (
        f"smtpd_tls_security_level = may\nsmtpd_tls_cert_file = {crt}\nsmtpd_tls_key_file = {key}\n"
    )


def test_tls_security_options_apply_after_starttls(start, cert):
    smtpd = start(
        AUTH_MAIN
        + cert
        + "smtpd_sasl_security_options = noanonymous, noplaintext\n"
        + "smtpd_sasl_tls_security_options = noanonymous\n"
    )
    with smtplib.SMTP("127.0.0.1", smtpd.port) as s:
        s.ehlo("client.example")
        assert not s.has_extn("auth")  # PLAIN and LOGIN need TLS here
        s.starttls(context=client_context())
        s.ehlo("client.example")
        assert s.esmtp_features["auth"].split() == ["PLAIN", "LOGIN"]
        assert s.login("joe", "s3cret pass")[0] == 235
        s.mail("joe@sender.example")
        s.rcpt("someone@elsewhere.example")
        assert s.data(MESSAGE)[0] == 250
    (path,) = incoming_files(smtpd.cdir)
    assert b" with ESMTPSA id " in b"\n".join(iter_content(path))


@pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks is not installed")
def test_swaks_tls_auth_only(start, cert):
    smtpd = start(AUTH_MAIN + cert + "smtpd_tls_auth_only = yes\n")
    common = ["swaks", "--server", f"127.0.0.1:{smtpd.port}", "--from", "joe@sender.example",
              "--to", "someone@elsewhere.example", "--auth-user", "joe",
              "--auth-password", "s3cret pass"]  # fmt: skip
    for mech in ("PLAIN", "LOGIN"):
        r = subprocess.run([*common, "--tls", "--auth", mech], capture_output=True, text=True,
                           timeout=60)  # fmt: skip
        assert r.returncode == 0, r.stdout + r.stderr
        assert "<~  235 2.7.0 Authentication successful" in r.stdout  # "~": over TLS
    clear = subprocess.run([*common, "--auth", "PLAIN"], capture_output=True, text=True,
                           timeout=60)  # fmt: skip
    assert clear.returncode != 0
    assert "235 " not in clear.stdout and "AUTH" not in clear.stdout.split("EHLO", 1)[1]


def test_the_error_notice_transcript_shows_no_credentials(start):
    smtpd = start(AUTH_MAIN + "notify_classes = protocol\n")
    secret = base64.b64encode(b"\0joe\0Guess3d")
    client = RawClient(smtpd.port)
    greet(client)
    client.send(b"AUTH PLAIN " + secret + b"\r\n")
    assert client.reply().startswith("535 ")
    client.send(b"AUTH LOGIN\r\n")
    client.reply()
    client.send(base64.b64encode(b"joe") + b"\r\n")
    client.reply()
    client.send(b"%%%\r\n")  # a protocol error: the session's notice is due
    assert client.reply().startswith("501 5.5.2 ")
    client.send(b"QUIT\r\n")
    client.reply()
    assert wait_for(lambda: incoming_files(smtpd.cdir), 10)
    (notice,) = incoming_files(smtpd.cdir)
    text = b"\n".join(iter_content(notice))
    assert b"C: AUTH PLAIN" in text and b"S: 535 5.7.8" in text
    assert secret not in text and base64.b64encode(b"joe") not in text


def test_sasl_exceptions_networks_hide_auth_but_allow_it(start):
    smtpd = start(AUTH_MAIN + "smtpd_sasl_exceptions_networks = 127.0.0.0/8\n")
    client = RawClient(smtpd.port)
    assert "AUTH" not in greet(client)
    client.send(plain("joe", "s3cret pass"))
    assert client.reply() == "235 2.7.0 Authentication successful"


def test_mail_auth_parameter_without_login_and_twice(start):
    smtpd = start()
    client = RawClient(smtpd.port)
    greet(client)
    client.send(b"MAIL FROM:<a@sender.example> AUTH=<> AUTH=a@sender.example\r\n")
    assert client.reply() == "503 5.5.4 Error: multiple AUTH= options"
    client.send(b"MAIL FROM:<a@sender.example> AUTH=a@sender.example\r\n")
    assert client.reply().startswith("250 ")
    client.send(b"RCPT TO:<x@mx.test.example>\r\nDATA\r\n")
    assert client.reply().startswith("250 ") and client.reply().startswith("354 ")
    client.send(MESSAGE + b".\r\n")
    assert client.reply().startswith("250 ")
    (path,) = incoming_files(smtpd.cdir)
    attrs = read_queue_file(path).attrs
    assert attrs["sasl_sender"] == "a@sender.example" and "sasl_username" not in attrs
    assert wait_for(lambda: "client=" in smtpd.maillog.read_text(), 5)
    assert "client=localhost[127.0.0.1], sasl_sender=a@sender.example\n" in (
        smtpd.maillog.read_text()
    )


def test_mechanism_filter(start, tmp_path):
    smtpd = start(AUTH_MAIN + "smtpd_sasl_mechanism_filter = !plain, static:rest\n")
    client = RawClient(smtpd.port)
    assert "250-AUTH LOGIN\n" in greet(client)
    client.send(plain("joe", "s3cret pass"))
    assert client.reply().endswith("Invalid authentication mechanism")
    client.send(b"AUTH LOGIN " + base64.b64encode(b"joe") + b"\r\n")
    assert client.reply() == "334 UGFzc3dvcmQ6"
    client.send(base64.b64encode(b"s3cret pass") + b"\r\n")
    assert client.reply() == "235 2.7.0 Authentication successful"


def test_concurrent_adds_all_land(tmp_path):
    cdir = make_instance(tmp_path, AUTH_MAIN)
    env = dict(os.environ, PYTHONPATH=ROOT)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "mta", "sasl", "-c", str(cdir), "add", f"user{i}"],
            stdin=subprocess.PIPE,
            env=env,
            text=True,
        )  # fmt: skip
        for i in range(6)
    ]
    for i, proc in enumerate(procs):
        proc.communicate(f"pw{i}\n", timeout=60)
        assert proc.returncode == 0
    assert mta_sasl(cdir, "list").stdout.split() == [f"user{i}" for i in range(6)]


def test_encrypt_level_keeps_auth_for_after_starttls(start, cert):
    smtpd = start(AUTH_MAIN + cert.replace("level = may", "level = encrypt"))
    with smtplib.SMTP("127.0.0.1", smtpd.port) as s:
        s.ehlo("client.example")
        assert not s.has_extn("auth")
        assert s.docmd("AUTH", "PLAIN") == (530, b"5.7.0 Must issue a STARTTLS command first")
        s.starttls(context=client_context())
        s.ehlo("client.example")
        assert s.login("joe", "s3cret pass")[0] == 235


def test_check_looks_at_a_submission_service_override(tmp_path):
    cdir = make_instance(
        tmp_path,
        "",
        "submission inet n - n - - smtpd -o smtpd_sasl_auth_enable=yes\n",
    )
    fatal = [str(p) for p in config_problems(Config(str(cdir))) if p.fatal]
    assert any("cyrus is not supported: use dovecot or mta" in p for p in fatal), fatal
