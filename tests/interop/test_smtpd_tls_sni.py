"""tls_server_sni_maps: the certificate chosen by the server name a client sends (SNI)."""

import smtplib
import subprocess
import sys

import pytest

from mta.config import Config
from mta.config.validate import config_problems
from tests.support.instance import make_instance
from tests.support.tls import (
    SmtpdStarter,
    client_context,
    der_of,
    issue,
    make_ca,
    self_signed,
    tls_main_cf,
)

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    out = {n: self_signed(d, n) for n in ("mx.test.example", "a.example", "example.net")}
    for name, (cert, key) in out.items():  # chain files: the key, then its certificate
        chain = d / f"{name}.chain.pem"
        chain.write_bytes(open(key, "rb").read() + open(cert, "rb").read())
        out[name] = (cert, key, str(chain))
    return out


@pytest.fixture
def start(tmp_path):
    starter = SmtpdStarter(tmp_path)
    yield starter
    starter.close()


def served(port: int, sni: str | None) -> bytes:
    """STARTTLS sending server name sni (None: no SNI); the DER of the certificate served."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.ehlo("client.example")
        assert s.docmd("STARTTLS")[0] == 220
        tls = client_context().wrap_socket(s.sock, server_hostname=sni)
        try:
            return tls.getpeercert(binary_form=True)
        finally:
            tls.close()


def sni_main_cf(certs, table: str) -> str:
    cert, key, _ = certs["mx.test.example"]
    return tls_main_cf(cert, key, tls_server_sni_maps=table)


def texthash(tmp_path, certs, **extra) -> str:
    src = tmp_path / "sni"
    rows = {
        "a.example": certs["a.example"][2],
        ".example.net": f"{certs['example.net'][1]}, {certs['example.net'][0]}",
        **extra,
    }
    src.write_text("".join(f"{k} {v}\n" for k, v in rows.items()))
    return f"texthash:{src}"


def test_the_name_then_its_parent_domains_choose_the_certificate(start, certs, tmp_path):
    smtpd = start(sni_main_cf(certs, texthash(tmp_path, certs)))
    default = der_of(certs["mx.test.example"][0])
    assert served(smtpd.port, "a.example") == der_of(certs["a.example"][0])
    assert served(smtpd.port, "A.Example") == der_of(certs["a.example"][0])
    assert served(smtpd.port, "mx.deep.example.net") == der_of(certs["example.net"][0])
    assert served(smtpd.port, "example.net") == default  # only ".example.net" is listed
    assert served(smtpd.port, "b.a.example") == default  # "a.example" has no leading dot
    assert served(smtpd.port, None) == default
    log = smtpd.maillog.read_text()
    assert "TLS SNI name b.a.example not found in tls_server_sni_maps" in log


def test_a_table_built_with_map_F_holds_the_keys_themselves(start, certs, tmp_path):
    src = tmp_path / "sni"
    chain = tmp_path / "a.pem"
    chain.write_bytes(open(certs["a.example"][2], "rb").read())
    src.write_text(f"a.example {chain}\n")
    cdir = make_instance(tmp_path / "map")
    subprocess.run([sys.executable, "-m", "mta", "map", "-c", str(cdir), "-F", f"lmdb:{src}"],
                   check=True, capture_output=True, timeout=60)  # fmt: skip
    src.unlink()  # the table needs neither its source nor the files it named
    chain.unlink()
    smtpd = start(sni_main_cf(certs, f"lmdb:{src}"))
    assert served(smtpd.port, "a.example") == der_of(certs["a.example"][0])


def test_openssl_s_client_servername(start, certs, tmp_path):
    smtpd = start(sni_main_cf(certs, texthash(tmp_path, certs)))
    out = subprocess.run(
        ["openssl", "s_client", "-starttls", "smtp", "-connect", f"127.0.0.1:{smtpd.port}",
         "-servername", "a.example"],
        input=b"QUIT\r\n", capture_output=True, timeout=30,
    ).stdout.decode()  # fmt: skip
    assert "subject=CN = a.example" in out


def test_a_value_that_cannot_be_loaded_gets_the_default_and_a_warning(start, certs, tmp_path):
    table = texthash(tmp_path, certs, **{"bad.example": str(tmp_path / "missing.pem")})
    smtpd = start(sni_main_cf(certs, table))
    assert served(smtpd.port, "bad.example") == der_of(certs["mx.test.example"][0])
    assert served(smtpd.port, "a.example") == der_of(certs["a.example"][0])
    log = smtpd.maillog.read_text()
    assert "warning: TLS SNI bad.example: tls_server_sni_maps: " in log
    assert "missing.pem: No such file" in log
    (found,) = [p for p in config_problems(Config(str(smtpd.cdir))) if "SNI" in str(p)]
    assert "parameter tls_server_sni_maps: TLS SNI bad.example: " in str(found)
    assert "missing.pem: No such file" in str(found) and not found.fatal


def test_a_table_that_does_not_open_is_named_by_check_and_gets_the_default(start, certs, tmp_path):
    missing = tmp_path / "no-sni"
    smtpd = start(sni_main_cf(certs, f"lmdb:{missing}"))
    problems = config_problems(Config(str(smtpd.cdir)), open_tables=True)
    (found,) = [p for p in problems if "tls_server_sni_maps" in str(p)]
    assert str(missing) in str(found) and str(smtpd.cdir / "main.cf") in str(found)
    assert served(smtpd.port, "a.example") == der_of(certs["mx.test.example"][0])
    assert "warning: tls_server_sni_maps: " in smtpd.maillog.read_text()


def test_an_invalid_name_gets_the_default(start, certs, tmp_path):
    smtpd = start(sni_main_cf(certs, texthash(tmp_path, certs)))
    assert served(smtpd.port, "under_score.example") == der_of(certs["mx.test.example"][0])
    assert "is not a valid host name" in smtpd.maillog.read_text()


def test_the_sni_context_asks_for_client_certificates_as_the_default_does(start, certs, tmp_path):
    ca = make_ca(tmp_path)
    client = issue(tmp_path, ca, "client.example")
    main_cf = sni_main_cf(certs, texthash(tmp_path, certs))
    smtpd = start(main_cf + f"smtpd_tls_ask_ccert = yes\nsmtpd_tls_CAfile = {ca[0]}\n")
    ctx = client_context()
    ctx.load_cert_chain(*client)
    with smtplib.SMTP("127.0.0.1", smtpd.port, timeout=10) as s:
        s.ehlo("client.example")
        assert s.docmd("STARTTLS")[0] == 220
        tls = ctx.wrap_socket(s.sock, server_hostname="a.example")
        assert tls.getpeercert(binary_form=True) == der_of(certs["a.example"][0])
        tls.sendall(b"EHLO client.example\r\n")
        assert tls.recv(4096).startswith(b"250")
        tls.close()
    log = smtpd.maillog.read_text()
    assert "Trusted TLS connection established from localhost[127.0.0.1]" in log


def test_the_keys_of_a_listable_table_are_loaded_when_smtpd_starts(start, certs, tmp_path):
    chain = tmp_path / "a.pem"
    chain.write_bytes(open(certs["a.example"][2], "rb").read())
    src = tmp_path / "sni"
    src.write_text(f"a.example {chain}\n")
    smtpd = start(sni_main_cf(certs, f"texthash:{src}"))
    chain.unlink()  # as a root-only file is out of reach once smtpd has given up root
    assert served(smtpd.port, "a.example") == der_of(certs["a.example"][0])


def test_check_names_a_bad_entry_of_an_sni_table_set_in_master_cf(certs, tmp_path):
    table = texthash(tmp_path, certs, **{"bad.example": str(tmp_path / "missing.pem")})
    master_cf = f"2525 inet n - n - - smtpd\n  -o tls_server_sni_maps={table}\n"
    cdir = make_instance(tmp_path, tls_main_cf(*certs["mx.test.example"][:2]), master_cf)
    (found,) = [p for p in config_problems(Config(str(cdir))) if "SNI" in str(p)]
    assert "TLS SNI bad.example: " in str(found) and "missing.pem" in str(found)
