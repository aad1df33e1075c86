"""The TLS library settings on smtpd: tls_eecdh_auto_curves, tls_ssl_options,
tls_disable_workarounds, smtpd_tls_ccert_verifydepth, and the ones mta warns about."""

import smtplib
import ssl
import subprocess

import pytest

from mta.common.tls_options import OP_TLSEXT_PADDING
from mta.config import Config
from mta.config.validate import config_problems
from mta.smtpd.tls import server_context
from tests.support.tls import (
    SmtpdStarter,
    client_context,
    make_ca,
    openssl,
    self_signed,
    tls_main_cf,
)

pytestmark = pytest.mark.interop

TLS12 = {"maximum_version": ssl.TLSVersion.TLSv1_2}


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    return self_signed(d, "mx.test.example")


@pytest.fixture
def start(tmp_path):
    starter = SmtpdStarter(tmp_path)
    yield starter
    starter.close()


def s_client(port: int, *args: str) -> str:
    return subprocess.run(
        ["openssl", "s_client", "-starttls", "smtp", "-connect", f"127.0.0.1:{port}", *args],
        input=b"QUIT\r\n", capture_output=True, timeout=30,
    ).stdout.decode()  # fmt: skip


def test_auto_curves_offer_only_the_listed_curves_openssl_knows(start, certs):
    smtpd = start(tls_main_cf(*certs, tls_eecdh_auto_curves="nosuchcurve, secp384r1"))
    assert "Cipher is (NONE)" in s_client(smtpd.port, "-groups", "X25519")
    out = s_client(smtpd.port, "-groups", "X25519:secp384r1")
    assert "Server Temp Key: ECDH, secp384r1" in out
    default = start(tls_main_cf(*certs))
    assert "Server Temp Key: X25519" in s_client(default.port, "-groups", "X25519:secp384r1")


def test_auto_curves_without_a_usable_one_is_named_and_gets_454(start, certs):
    smtpd = start(tls_main_cf(*certs, tls_eecdh_auto_curves="nosuchcurve"))
    (found,) = [p for p in config_problems(Config(str(smtpd.cdir))) if "auto_curves" in str(p)]
    assert "no curve OpenSSL can use: nosuchcurve" in str(found)
    assert str(smtpd.cdir / "main.cf") in str(found)
    with smtplib.SMTP("127.0.0.1", smtpd.port) as s:
        s.ehlo("client.example")
        assert s.docmd("STARTTLS")[0] == 454


def has_ticket(port: int) -> bool:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.ehlo("client.example")
        s.starttls(context=client_context(**TLS12))
        return s.sock.session.has_ticket


def test_ssl_options_no_ticket_issues_no_session_ticket(start, certs):
    assert has_ticket(start(tls_main_cf(*certs)).port)
    assert not has_ticket(start(tls_main_cf(*certs, tls_ssl_options="no_ticket")).port)


def test_disable_workarounds_clears_the_workaround_bit(start, certs):
    smtpd = start(tls_main_cf(*certs, tls_disable_workarounds="TLSEXT_PADDING, TLS_D5_BUG"))
    assert not server_context(Config(str(smtpd.cdir))).options & OP_TLSEXT_PADDING
    plain = start(tls_main_cf(*certs))
    assert server_context(Config(str(plain.cdir))).options & OP_TLSEXT_PADDING
    with smtplib.SMTP("127.0.0.1", smtpd.port, timeout=10) as s:
        s.ehlo("client.example")
        assert s.starttls(context=client_context())[0] == 220


@pytest.mark.parametrize(
    "param, value, text",
    [
        ("tls_ssl_options", "NO_TICKET, NO_SUCH_OPTION", "unknown TLS option: NO_SUCH_OPTION"),
        ("tls_ssl_options", "0x2000000", "that the protocol and cipher preference parameters"),
        ("tls_ssl_options", "0xZZ", "bad hexadecimal mask: 0xZZ"),
        ("tls_disable_workarounds", "TLS_D6_BUG", "unknown TLS bug workaround: TLS_D6_BUG"),
    ],
)
def test_a_bad_option_is_a_check_error_and_starttls_gets_454(start, certs, param, value, text):
    smtpd = start(tls_main_cf(*certs, **{param: value}))
    problems = [p for p in config_problems(Config(str(smtpd.cdir))) if param in str(p)]
    assert len(problems) == 1 and problems[0].fatal and text in str(problems[0])
    assert str(smtpd.cdir / "main.cf") in str(problems[0])
    with smtplib.SMTP("127.0.0.1", smtpd.port) as s:
        s.ehlo("client.example")
        assert s.docmd("STARTTLS")[0] == 454


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """A root CA, an intermediate CA it signed, and a client certificate from the intermediate:
    (root cert, (client chain file, client key))."""
    d = tmp_path_factory.mktemp("chain")
    root = make_ca(d, "Root CA")
    inter_key, inter_csr, inter = d / "inter.key", d / "inter.csr", d / "inter.crt"
    ext = d / "ca.ext"
    ext.write_text("basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n")
    openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=Intermediate CA",
            "-keyout", str(inter_key), "-out", str(inter_csr))  # fmt: skip
    openssl("x509", "-req", "-in", str(inter_csr), "-CA", root[0], "-CAkey", root[1],
            "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(inter))  # fmt: skip
    key, csr, leaf = d / "client.key", d / "client.csr", d / "client.crt"
    openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=client.example",
            "-keyout", str(key), "-out", str(csr))  # fmt: skip
    openssl("x509", "-req", "-in", str(csr), "-CA", str(inter), "-CAkey", str(inter_key),
            "-CAcreateserial", "-days", "2", "-out", str(leaf))  # fmt: skip
    full = d / "client-chain.pem"
    full.write_bytes(leaf.read_bytes() + inter.read_bytes())
    return root[0], (str(full), str(key))


@pytest.mark.parametrize("depth, kind", [("1", "Untrusted"), ("2", "Trusted"), ("9", "Trusted")])
def test_ccert_verifydepth_bounds_the_client_chain(start, certs, chain, depth, kind):
    params = {"smtpd_tls_ask_ccert": "yes", "smtpd_tls_CAfile": chain[0],
              "smtpd_tls_ccert_verifydepth": depth}  # fmt: skip
    smtpd = start(tls_main_cf(*certs, **params))
    ctx = client_context()
    ctx.load_cert_chain(*chain[1])
    with smtplib.SMTP("127.0.0.1", smtpd.port, timeout=10) as s:
        s.ehlo("client.example")
        s.starttls(context=ctx)
        s.ehlo("client.example")
    log = smtpd.maillog.read_text()
    assert f"{kind} TLS connection established from localhost[127.0.0.1]" in log


@pytest.mark.parametrize(
    "param, value",
    [("tls_random_source", "dev:/dev/random"), ("tls_config_file", "none"),
     ("smtpd_tls_always_issue_session_ids", "no"), ("tls_fast_shutdown_enable", "no")],
)  # fmt: skip
def test_a_library_setting_mta_leaves_to_openssl_is_warned_about(start, certs, param, value):
    smtpd = start(tls_main_cf(*certs, **{param: value}))
    problems = [p for p in config_problems(Config(str(smtpd.cdir))) if param in str(p)]
    assert len(problems) == 1 and not problems[0].fatal
    assert f"{param} is not implemented" in str(problems[0])
    quiet = start(tls_main_cf(*certs, tls_config_file="default", tls_random_bytes="32"))
    assert not [p for p in config_problems(Config(str(quiet.cdir))) if "tls_" in str(p)]


def test_a_verifydepth_below_one_is_a_check_error(start, certs):
    smtpd = start(tls_main_cf(*certs, smtpd_tls_ccert_verifydepth="0"))
    (found,) = [p for p in config_problems(Config(str(smtpd.cdir))) if "verifydepth" in str(p)]
    assert found.fatal and "below the minimum 1" in str(found)


@pytest.mark.parametrize(
    "param, value", [("tls_config_file", "/etc/ssl/mta.cnf"), ("tls_config_name", "postfix")]
)
def test_openssl_settings_mta_would_not_apply_are_refused(start, certs, param, value):
    smtpd = start(tls_main_cf(*certs, **{param: value}))
    problems = [p for p in config_problems(Config(str(smtpd.cdir))) if param in str(p)]
    assert len(problems) == 1 and problems[0].fatal and "refused" in str(problems[0])


def test_a_verifydepth_that_is_no_number_is_a_check_error_and_gets_454(start, certs):
    params = {"smtpd_tls_ask_ccert": "yes", "smtpd_tls_ccert_verifydepth": "deep"}
    smtpd = start(tls_main_cf(*certs, **params))
    (found,) = [p for p in config_problems(Config(str(smtpd.cdir))) if "verifydepth" in str(p)]
    assert found.fatal and str(smtpd.cdir / "main.cf") in str(found)
    with smtplib.SMTP("127.0.0.1", smtpd.port) as s:
        s.ehlo("client.example")
        assert s.docmd("STARTTLS")[0] == 454
