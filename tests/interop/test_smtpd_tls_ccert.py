"""smtpd client certificates, the TLS Received: lines, loglevel 2 and the TLS restrictions,
with a CA and client certificates made by openssl, and Python ssl, swaks and s_client as clients."""

import shutil
import smtplib
import ssl
import subprocess

import pytest

from mta.common.tls_cert import cert_fingerprint, pkey_fingerprint
from mta.config import Config
from mta.config.validate import config_problems
from mta.queue.queue_file import iter_content
from tests.support.instance import incoming_files
from tests.support.running import wait_for
from tests.support.tls import SmtpdStarter, client_context, issue, make_ca, self_signed, tls_main_cf

pytestmark = pytest.mark.interop

MESSAGE = b"Subject: cert\r\nFrom: a@sender.example\r\n\r\nWith a certificate.\r\n"
RELAY = "smtpd_relay_restrictions = {}, reject_unauth_destination\n"


class Pki:
    def __init__(self, d) -> None:
        self.dir = d
        self.server = self_signed(d, "mx.test.example")
        self.ca = make_ca(d)
        self.trusted = issue(d, self.ca, "client.example")
        self.untrusted = self_signed(d, "stranger.example")

    def der(self, pair) -> bytes:
        return ssl.PEM_cert_to_DER_cert(open(pair[0]).read())


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def start(tmp_path):
    starter = SmtpdStarter(tmp_path)
    yield starter
    starter.close()


def main_cf(pki, level="may", **params) -> str:
    return tls_main_cf(*pki.server, level, **params)


def ask(pki, level="may", **params) -> str:
    params = {"smtpd_tls_ask_ccert": "yes", "smtpd_tls_CAfile": pki.ca[0], **params}
    return main_cf(pki, level, **params)


def session(port: int, cert=None) -> smtplib.SMTP:
    ctx = client_context()
    if cert is not None:
        ctx.load_cert_chain(*cert)
    s = smtplib.SMTP("127.0.0.1", port, timeout=10)
    s.ehlo("client.example")
    s.starttls(context=ctx)
    s.ehlo("client.example")
    return s


def send(port: int, cert=None, rcpt: str = "user@mx.test.example") -> tuple[int, bytes]:
    """STARTTLS (with cert), MAIL, RCPT and, when RCPT passes, DATA: the RCPT or DATA reply."""
    with session(port, cert) as s:
        s.mail("a@sender.example")
        reply = s.rcpt(rcpt)
        if reply[0] != 250:
            return reply
        return s.data(MESSAGE)


def received(smtpd) -> str:
    (path,) = incoming_files(smtpd.cdir)
    lines = list(iter_content(path))
    end = next(i for i, x in enumerate(lines[1:], 1) if not x[:1].isspace())
    return "\n".join(x.decode() for x in lines[:end])


def logged(smtpd, text: str) -> str:
    assert wait_for(lambda: text in smtpd.maillog.read_text(), 5), smtpd.maillog.read_text()
    return smtpd.maillog.read_text()


# ---------------------------------------------------------------- Received: and log lines


def test_received_header_names_protocol_and_cipher(start, pki):
    smtpd = start(main_cf(pki, smtpd_tls_received_header="yes"))
    assert send(smtpd.port)[0] == 250
    lines = received(smtpd).split("\n")
    assert lines[0] == "Received: from client.example (localhost [127.0.0.1])"
    assert lines[1:3] == [
        "\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits))",
        "\t(No client certificate requested)",
    ]
    assert lines[3].startswith("\tby mx.test.example (mta) with ESMTPS id ")


def test_without_the_parameter_received_has_no_tls_lines(start, pki):
    smtpd = start(main_cf(pki))
    assert send(smtpd.port)[0] == 250
    text = received(smtpd)
    assert "with ESMTPS" in text and "using TLS" not in text


def test_a_trusted_client_certificate(start, pki):
    smtpd = start(ask(pki, smtpd_tls_received_header="yes"))
    assert send(smtpd.port, pki.trusted)[0] == 250
    assert '\t(Client CN "client.example", Issuer "Test CA" (verified OK))' in received(smtpd)
    logged(smtpd, "Trusted TLS connection established from localhost[127.0.0.1]: TLSv1.3")


def test_an_untrusted_certificate_still_completes_the_handshake(start, pki):
    smtpd = start(ask(pki, smtpd_tls_received_header="yes"))
    assert send(smtpd.port, pki.untrusted)[0] == 250
    assert '(Client CN "stranger.example", Issuer "stranger.example" (not verified))' in received(
        smtpd
    )
    logged(smtpd, "Untrusted TLS connection established from localhost[127.0.0.1]")


def test_asked_but_no_certificate(start, pki):
    smtpd = start(ask(pki, smtpd_tls_received_header="yes"))
    assert send(smtpd.port)[0] == 250
    assert "\t(Client did not present a certificate)" in received(smtpd)
    logged(smtpd, "Anonymous TLS connection established from localhost[127.0.0.1]")


def test_loglevel_2_adds_setup_cipher_list_and_certificate_lines(start, pki):
    smtpd = start(ask(pki, smtpd_tls_loglevel="2"))
    with session(smtpd.port, pki.trusted):
        pass
    der = pki.der(pki.trusted)
    log = logged(smtpd, "subject_CN=client.example")
    assert "setting up TLS connection from localhost[127.0.0.1]" in log
    assert 'localhost[127.0.0.1]: TLS cipher list "' in log
    assert (
        f"localhost[127.0.0.1]: subject_CN=client.example, issuer=Test CA, "
        f"fingerprint={cert_fingerprint(der, 'sha256')}, "
        f"pkey_fingerprint={pkey_fingerprint(der, 'sha256')}"
    ) in log
    # loglevel 1 has none of them (the two servers share the maillog)
    quiet = start(ask(pki))
    with session(quiet.port, pki.trusted):
        pass
    log = logged(quiet, "disconnect from localhost[127.0.0.1] ehlo=2 starttls=1 quit=1")
    assert log.count("Trusted TLS connection established") == 2
    assert log.count("setting up TLS connection") == 1
    assert log.count("subject_CN=") == 1


def test_fingerprints_agree_with_openssl(pki):
    out = subprocess.run(
        ["openssl", "x509", "-in", pki.trusted[0], "-noout", "-fingerprint", "-sha256"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert out.strip().split("=", 1)[1] == cert_fingerprint(pki.der(pki.trusted), "sha256")


# ---------------------------------------------------------------- req_ccert


def test_req_ccert_at_encrypt_needs_a_trusted_certificate(start, pki):
    smtpd = start(ask(pki, "encrypt", smtpd_tls_req_ccert="yes", smtpd_tls_ask_ccert="no"))
    assert send(smtpd.port, pki.trusted)[0] == 250
    for cert, why in [(None, "No client certificate presented"),
                      (pki.untrusted, "Client certificate not trusted")]:  # fmt: skip
        with pytest.raises(smtplib.SMTPServerDisconnected):
            with session(smtpd.port, cert) as s:
                s.mail("a@sender.example")
        logged(smtpd, f"NOQUEUE: abort: TLS from localhost[127.0.0.1]: {why}")


def test_req_ccert_reply_is_421(start, pki):
    smtpd = start(ask(pki, "encrypt", smtpd_tls_req_ccert="yes"))
    s = smtplib.SMTP("127.0.0.1", smtpd.port, timeout=10)
    s.ehlo("client.example")
    s.starttls(context=client_context())
    assert s.ehlo("client.example") == (421, b"4.7.1 mx.test.example Error: No client certificate presented")  # fmt: skip
    s.close()


def test_req_ccert_at_may_is_ignored_as_in_postfix(start, pki):
    smtpd = start(main_cf(pki, smtpd_tls_req_ccert="yes", smtpd_tls_CAfile=pki.ca[0]))
    assert send(smtpd.port)[0] == 250
    logged(smtpd, "Anonymous TLS connection established")


# ---------------------------------------------------------------- restrictions


@pytest.fixture
def relay_table(tmp_path):
    def write(*keys: str) -> str:
        path = tmp_path / "relay_clientcerts"
        path.write_text("".join(f"{k} ok\n" for k in keys))
        return f"texthash:{path}"

    return write


def test_permit_tls_clientcerts_by_fingerprint_even_self_signed(start, pki, relay_table):
    der = pki.der(pki.untrusted)
    table = relay_table(cert_fingerprint(der, "sha256"))
    smtpd = start(ask(pki, relay_clientcerts=table) + RELAY.format("permit_tls_clientcerts"))
    assert send(smtpd.port, pki.untrusted, "x@elsewhere.example")[0] == 250
    code, text = send(smtpd.port, pki.trusted, "x@elsewhere.example")  # not listed
    assert (code, text) == (554, b"5.7.1 <x@elsewhere.example>: Relay access denied")
    assert send(smtpd.port, None, "x@elsewhere.example")[0] == 554


def test_permit_tls_clientcerts_by_public_key_fingerprint(start, pki, relay_table):
    table = relay_table(pkey_fingerprint(pki.der(pki.trusted), "sha256"))
    smtpd = start(ask(pki, relay_clientcerts=table) + RELAY.format("permit_tls_clientcerts"))
    assert send(smtpd.port, pki.trusted, "x@elsewhere.example")[0] == 250


def test_fingerprint_digest_sha1(start, pki, relay_table):
    table = relay_table(cert_fingerprint(pki.der(pki.untrusted), "sha1"))
    main = ask(pki, relay_clientcerts=table, smtpd_tls_fingerprint_digest="sha1")
    smtpd = start(main + RELAY.format("permit_tls_clientcerts"))
    assert send(smtpd.port, pki.untrusted, "x@elsewhere.example")[0] == 250


def test_permit_tls_all_clientcerts_needs_a_verified_certificate(start, pki):
    smtpd = start(ask(pki) + RELAY.format("permit_tls_all_clientcerts"))
    assert send(smtpd.port, pki.trusted, "x@elsewhere.example")[0] == 250
    assert send(smtpd.port, pki.untrusted, "x@elsewhere.example")[0] == 554


def test_check_ccert_access_rejects_by_fingerprint(start, pki, tmp_path):
    table = tmp_path / "ccert_access"
    fp = cert_fingerprint(pki.der(pki.untrusted), "sha256")
    table.write_text(f"{fp} REJECT not this one\n")
    main = ask(pki, smtpd_client_restrictions=f"check_ccert_access texthash:{table}")
    smtpd = start(main)
    code, text = send(smtpd.port, pki.untrusted)
    assert code == 554
    assert text == b"5.7.1 <localhost[127.0.0.1]>: Client certificate rejected: not this one"
    assert send(smtpd.port, pki.trusted)[0] == 250


def test_reject_plaintext_session(start, pki):
    main = main_cf(pki, smtpd_recipient_restrictions="reject_plaintext_session")
    smtpd = start(main)
    with smtplib.SMTP("127.0.0.1", smtpd.port) as s:
        s.ehlo("client.example")
        s.mail("a@sender.example")
        assert s.rcpt("user@mx.test.example") == (450, b"4.7.1 Session encryption is required")
    assert send(smtpd.port)[0] == 250
    smtpd = start(main + "plaintext_reject_code = 550\n")
    with smtplib.SMTP("127.0.0.1", smtpd.port) as s:
        s.ehlo("client.example")
        s.mail("a@sender.example")
        assert s.rcpt("user@mx.test.example")[0] == 550


# ---------------------------------------------------------------- bad settings


def test_bad_cafile_and_digest_are_named_by_check_and_get_454(start, pki, tmp_path):
    missing = tmp_path / "no-ca.pem"
    smtpd = start(ask(pki) + f"smtpd_tls_CAfile = {missing}\n")
    problems = [str(p) for p in config_problems(Config(str(smtpd.cdir)))]
    assert any("smtpd_tls_CAfile" in p and str(missing) in p for p in problems), problems
    with smtplib.SMTP("127.0.0.1", smtpd.port) as s:
        s.ehlo("client.example")
        assert s.docmd("STARTTLS")[0] == 454
    other = start(main_cf(pki, smtpd_tls_fingerprint_digest="sha7"))
    problems = [str(p) for p in config_problems(Config(str(other.cdir)))]
    assert any(
        "smtpd_tls_fingerprint_digest" in p and "unknown digest: sha7" in p for p in problems
    )


# ---------------------------------------------------------------- other clients


@pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks is not installed")
def test_swaks_with_a_client_certificate(start, pki):
    smtpd = start(ask(pki))
    out = subprocess.run(
        ["swaks", "--tls", "--server", f"127.0.0.1:{smtpd.port}", "--helo", "client.example",
         "--from", "a@sender.example", "--to", "user@mx.test.example",
         "--tls-cert", pki.trusted[0], "--tls-key", pki.trusted[1]],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    logged(smtpd, "Trusted TLS connection established from localhost[127.0.0.1]")


def test_openssl_s_client_with_a_client_certificate(start, pki):
    smtpd = start(ask(pki))
    out = subprocess.run(
        ["openssl", "s_client", "-starttls", "smtp", "-connect", f"127.0.0.1:{smtpd.port}",
         "-cert", pki.untrusted[0], "-key", pki.untrusted[1], "-quiet"],
        input="QUIT\r\n", capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert "221 2.0.0 Bye" in out.stdout, out.stdout + out.stderr
    logged(smtpd, "Untrusted TLS connection established from localhost[127.0.0.1]")


@pytest.mark.timeout(120)
def test_trust_is_told_apart_under_the_master_event_loop(tmp_path, pki):
    # the real smtpd process runs uvloop when installed: trusted and untrusted still differ
    from tests.support.running import Instance, free_port

    port = free_port()
    inst = Instance(
        tmp_path,
        f"127.0.0.1:{port} inet n - n - - smtpd\n",
        {"myhostname": "mx.test.example", "smtpd_peername_lookup": "no",
         "smtpd_tls_security_level": "may", "smtpd_tls_cert_file": pki.server[0],
         "smtpd_tls_key_file": pki.server[1], "smtpd_tls_loglevel": "1",
         "smtpd_tls_ask_ccert": "yes", "smtpd_tls_CAfile": pki.ca[0]},
    )  # fmt: skip
    r = inst.mta("start")
    assert r.returncode == 0, r.stderr + inst.log()
    try:
        for cert in (pki.trusted, pki.untrusted):
            with session(port, cert):
                pass
        inst.wait_log(r"smtpd\[\d+\]: Trusted TLS connection established from unknown")
        inst.wait_log(r"smtpd\[\d+\]: Untrusted TLS connection established from unknown")
    finally:
        inst.stop()


def test_without_the_verify_callback_an_untrusted_certificate_fails_never_passes(
    start, pki, monkeypatch
):
    # where OpenSSL's verify callback cannot be set, OpenSSL's own check stays: stricter
    from mta.common import tls_libssl

    monkeypatch.setattr(tls_libssl, "ctx_pointer", lambda ctx: 0)
    smtpd = start(ask(pki) + RELAY.format("permit_tls_all_clientcerts"))
    assert send(smtpd.port, pki.trusted, "x@elsewhere.example")[0] == 250
    with pytest.raises((ssl.SSLError, smtplib.SMTPServerDisconnected, ConnectionError)):
        send(smtpd.port, pki.untrusted, "x@elsewhere.example")
    assert "cannot accept client certificates that do not verify" in smtpd.maillog.read_text()
