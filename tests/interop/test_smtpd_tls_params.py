"""smtpd's TLS protocols, cipher grades, exclusions, curves and DH parameters, with Python's ssl."""

import smtplib
import ssl

import pytest

from mta.config import Config
from mta.config.validate import config_problems
from tests.support.tls import SmtpdStarter, client_context, openssl, self_signed, tls_main_cf

pytestmark = pytest.mark.interop

TLS12 = {"maximum_version": ssl.TLSVersion.TLSv1_2}


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    cert, key = self_signed(d, "mx.test.example")
    dh = d / "dh.pem"
    openssl("genpkey", "-genparam", "-algorithm", "DH", "-pkeyopt", "group:ffdhe2048",
            "-out", str(dh))  # fmt: skip
    return cert, key, str(dh)


@pytest.fixture
def start(tmp_path):
    starter = SmtpdStarter(tmp_path)
    yield starter
    starter.close()


def handshake(port: int, **bounds) -> tuple[str, str]:
    """STARTTLS with a client context; (protocol, cipher) or raise ssl.SSLError."""
    ctx = client_context(**{k: v for k, v in bounds.items() if k != "ciphers"})
    if "ciphers" in bounds:
        ctx.set_ciphers(bounds["ciphers"])
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.ehlo("client.example")
        s.starttls(context=ctx)
        return s.sock.version(), s.sock.cipher()[0]


def main_cf(certs, level="may", **params) -> str:
    return tls_main_cf(certs[0], certs[1], level, **params)


def test_protocols_lower_bound_refuses_an_older_client(start, certs):
    smtpd = start(main_cf(certs, smtpd_tls_protocols=">=TLSv1.3"))
    with pytest.raises((ssl.SSLError, smtplib.SMTPServerDisconnected, ConnectionError)):
        handshake(smtpd.port, **TLS12)
    assert handshake(smtpd.port)[0] == "TLSv1.3"
    assert "SSL_accept error from localhost[127.0.0.1]" in smtpd.maillog.read_text()


def test_legacy_exclusions_cap_the_protocol(start, certs):
    smtpd = start(main_cf(certs, smtpd_tls_protocols="!SSLv2, !SSLv3, !TLSv1.3"))
    assert handshake(smtpd.port)[0] == "TLSv1.2"


def test_mandatory_protocols_apply_at_encrypt_only(start, certs):
    params = {"smtpd_tls_protocols": ">=TLSv1.3", "smtpd_tls_mandatory_protocols": "TLSv1.2"}
    smtpd = start(main_cf(certs, "encrypt", **params))
    assert handshake(smtpd.port)[0] == "TLSv1.2"
    smtpd = start(main_cf(certs, "may", **params))
    assert handshake(smtpd.port)[0] == "TLSv1.3"


def test_exclude_ciphers_at_every_level_and_mandatory_exclusions_at_encrypt(start, certs):
    offer = {"ciphers": "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256", **TLS12}
    smtpd = start(main_cf(certs, smtpd_tls_exclude_ciphers="AES256"))
    assert handshake(smtpd.port, **offer)[1] == "ECDHE-RSA-AES128-GCM-SHA256"
    excl = {"smtpd_tls_mandatory_exclude_ciphers": "AES128"}
    smtpd = start(main_cf(certs, "may", **excl))  # not mandatory: AES128 stays
    got = handshake(smtpd.port, ciphers="ECDHE-RSA-AES128-GCM-SHA256", **TLS12)
    assert got[1] == "ECDHE-RSA-AES128-GCM-SHA256"
    smtpd = start(main_cf(certs, "encrypt", **excl))
    assert handshake(smtpd.port, **offer)[1] == "ECDHE-RSA-AES256-GCM-SHA384"
    with pytest.raises((ssl.SSLError, smtplib.SMTPServerDisconnected, ConnectionError)):
        handshake(smtpd.port, ciphers="ECDHE-RSA-AES128-GCM-SHA256", **TLS12)


def test_the_grade_takes_its_tls_cipherlist(start, certs):
    only = "ECDHE-RSA-AES128-GCM-SHA256"
    smtpd = start(main_cf(certs, smtpd_tls_ciphers="high", tls_high_cipherlist=only))
    assert handshake(smtpd.port, **TLS12)[1] == only


def test_grade_null_offers_no_encrypting_cipher_below_tls13(start, certs):
    smtpd = start(main_cf(certs, smtpd_tls_ciphers="null"))
    with pytest.raises((ssl.SSLError, smtplib.SMTPServerDisconnected, ConnectionError)):
        handshake(smtpd.port, **TLS12)


@pytest.mark.parametrize("preempt, want", [("no", "AES128"), ("yes", "AES256")])
def test_preempt_cipherlist_lets_the_server_order_win(start, certs, preempt, want):
    smtpd = start(main_cf(certs, tls_preempt_cipherlist=preempt))
    offer = "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384"  # the client's order
    assert want in handshake(smtpd.port, ciphers=offer, **TLS12)[1]


def test_eecdh_none_and_dh_params_give_dhe(start, certs):
    smtpd = start(main_cf(certs, smtpd_tls_eecdh_grade="none",
                          smtpd_tls_dh1024_param_file=certs[2]))  # fmt: skip
    assert handshake(smtpd.port, **TLS12)[1].startswith("DHE-RSA-")


def test_eecdh_grade_ultra_uses_its_curve(start, certs):
    smtpd = start(main_cf(certs, smtpd_tls_eecdh_grade="ultra"))
    assert handshake(smtpd.port)[0] == "TLSv1.3"  # secp384r1 is shared with every client
    bad = start(main_cf(certs, smtpd_tls_eecdh_grade="ultra", tls_eecdh_ultra_curve="nocurve"))
    with smtplib.SMTP("127.0.0.1", bad.port) as s:
        s.ehlo("client.example")
        assert s.docmd("STARTTLS")[0] == 454
    assert "tls_eecdh_ultra_curve: unknown curve: nocurve" in bad.maillog.read_text()


@pytest.mark.parametrize(
    "param, value, text",
    [
        ("smtpd_tls_protocols", ">=TLSv1, !TLSv9", "unknown TLS protocol: TLSv9"),
        ("smtpd_tls_protocols", "<=TLSv1.4", "unknown TLS protocol version: TLSv1.4"),
        ("smtpd_tls_ciphers", "strong", "unknown cipher grade: strong"),
        ("smtpd_tls_mandatory_ciphers", "HIGH", None),  # case does not matter
        ("smtpd_tls_exclude_ciphers", "RC4 !3DES", "invalid cipher exclusion: !3DES"),
        ("smtpd_tls_eecdh_grade", "extreme", 'bad value "extreme"'),
    ],
)
def test_check_names_a_bad_value_and_starttls_gets_454(start, certs, param, value, text):
    smtpd = start(main_cf(certs, **{param: value}))
    problems = [p for p in config_problems(Config(str(smtpd.cdir))) if param in str(p)]
    if text is None:
        assert problems == []
        assert handshake(smtpd.port)[0] == "TLSv1.3"
        return
    assert len(problems) == 1 and problems[0].fatal and text in str(problems[0])
    assert str(smtpd.cdir / "main.cf") in str(problems[0])
    with smtplib.SMTP("127.0.0.1", smtpd.port) as s:
        s.ehlo("client.example")
        assert s.docmd("STARTTLS") == (454, b"4.7.0 TLS not available due to local problem")
    assert f"TLS library problem: {param}" in smtpd.maillog.read_text()


def test_an_unreadable_dh_file_is_named_by_check_and_gets_454(start, certs, tmp_path):
    missing = tmp_path / "no-dh.pem"
    smtpd = start(main_cf(certs, smtpd_tls_dh1024_param_file=str(missing)))
    (found,) = [p for p in config_problems(Config(str(smtpd.cdir))) if "dh1024" in str(p)]
    assert str(missing) in str(found) and "No such file" in str(found)
    with smtplib.SMTP("127.0.0.1", smtpd.port) as s:
        s.ehlo("client.example")
        assert s.docmd("STARTTLS")[0] == 454


def test_a_file_without_dh_parameters_is_named(start, certs):
    smtpd = start(main_cf(certs, smtpd_tls_dh1024_param_file=certs[0]))  # a certificate
    (found,) = [p for p in config_problems(Config(str(smtpd.cdir))) if "dh1024" in str(p)]
    assert certs[0] in str(found) and "no DH parameters" in str(found)


def test_a_cipherlist_openssl_refuses_is_named_by_check_and_gets_454(start, certs):
    smtpd = start(main_cf(certs, smtpd_tls_ciphers="high", tls_high_cipherlist="NOSUCHCIPHER"))
    problems = [str(p) for p in config_problems(Config(str(smtpd.cdir)))]
    (found,) = [p for p in problems if "smtpd_tls_ciphers" in p]
    assert "no cipher can be selected from NOSUCHCIPHER" in found
    with smtplib.SMTP("127.0.0.1", smtpd.port) as s:
        s.ehlo("client.example")
        assert s.docmd("STARTTLS")[0] == 454
