"""mta check: the DANE parameters (smtp_dns_support_level, tls_dane_digests) are checked."""

from mta.config import Config
from mta.config.validate import config_problems

MASTER_CF = "smtp inet n - n - - smtpd\nrelay unix - - n - - smtp\n"


def fatal_lines(tmp_path, main: str) -> list[str]:
    (tmp_path / "main.cf").write_text(main)
    (tmp_path / "master.cf").write_text(MASTER_CF)
    return [str(p) for p in config_problems(Config(str(tmp_path))) if p.fatal]


def test_good_dane_settings_have_no_problem(tmp_path):
    main = (
        "smtp_dns_support_level = dnssec\nlmtp_dns_support_level = enabled\n"
        "smtp_tls_security_level = dane\ntls_dane_digests = sha512=2, sha256\n"
    )
    assert fatal_lines(tmp_path, main) == []


def test_unknown_dns_support_level_is_fatal(tmp_path):
    got = fatal_lines(tmp_path, "smtp_dns_support_level = dnsec\n")
    assert got == [
        f'{tmp_path / "main.cf"}, line 1: parameter smtp_dns_support_level: bad value "dnsec" '
        "(expected disabled or enabled or dnssec)"
    ]


def test_unsupported_dane_digest_is_fatal(tmp_path):
    got = fatal_lines(tmp_path, "\ntls_dane_digests = sha512 md5\n")
    assert len(got) == 1
    assert got[0].startswith(
        f'{tmp_path / "main.cf"}, line 2: parameter tls_dane_digests: bad value "md5"'
    )
