"""mta check on the smtp/lmtp client's TLS and SASL parameters that mta declares but
does not build (mta/config/unimplemented.py): warned, or refused where less security
would be served than asked for."""

import pytest

from mta.config import Config
from mta.config.validate import config_problems


def test_postfixs_defaults_are_quiet(check):
    main = (
        "smtp_tls_scert_verifydepth = 9\nsmtp_sasl_type = cyrus\nsmtp_tls_per_site =\n"
        "smtp_sasl_auth_cache_time = 90d\nlmtp_tls_enforce_peername = yes\n"
    )
    assert check(main) == []


@pytest.mark.parametrize("name", ["smtp_tls_scert_verifydepth", "lmtp_tls_scert_verifydepth"])
@pytest.mark.parametrize("depth", ["2", "12"])
def test_a_verify_depth_is_in_force_and_quiet(check, name, depth):
    assert check(f"{name} = {depth}\nsmtp_tls_security_level = verify\n") == []


def test_a_verify_depth_of_0_cannot_be_enforced_at_verify(check):
    ((text, fatal),) = check("smtp_tls_scert_verifydepth = 0\nsmtp_tls_security_level = verify\n")
    assert not fatal  # the client defers the mail that needs it (smtp/tls_verify.py)
    assert "smtp_tls_scert_verifydepth" in text and "depth 0 cannot be enforced" in text


def test_the_old_per_site_table_is_refused(check):
    ((text, fatal),) = check("smtp_tls_per_site = texthash:/etc/mta/tls_per_site\n")
    assert fatal and "smtp_tls_per_site" in text and "refused" in text


@pytest.mark.parametrize("name", ["smtp_sasl_path", "lmtp_sasl_path"])
def test_a_sasl_plug_in_path_is_warned(check, name):
    ((text, fatal),) = check(f"{name} = smtp\n")
    assert not fatal and f"{name} is not implemented" in text


def test_a_bad_verify_depth_names_parameter_and_file(check, tmp_path):
    got = check("smtp_tls_scert_verifydepth = deep\n")
    assert f"{tmp_path / 'main.cf'}, line 1: parameter smtp_tls_scert_verifydepth: " in got[0][0]
    assert got[0][1]


def test_an_unknown_sasl_security_option_is_fatal_once(check, tmp_path):
    got = check("myhostname = mx.example\nsmtp_sasl_security_options = noplain\n")
    assert got == [
        (
            f"{tmp_path / 'main.cf'}, line 2: parameter smtp_sasl_security_options: unknown "
            'value "noplain" (expected mutual_auth or noactive or noanonymous or nodictionary '
            "or noplaintext)",
            True,
        )
    ]


def test_an_unknown_verified_option_of_lmtp_is_fatal(check):
    ((text, fatal),) = check("lmtp_sasl_tls_verified_security_options = noanon\n")
    assert fatal and "lmtp_sasl_tls_verified_security_options" in text and "noanon" in text


def test_an_auth_cache_that_is_no_lmdb_table_is_warned(check, tmp_path):
    got = check("smtp_sasl_auth_cache_name = cdb:/var/lib/mta/sasl\n")
    assert got == [
        (
            f"{tmp_path / 'main.cf'}, line 1: parameter smtp_sasl_auth_cache_name: unsupported "
            'table "cdb:/var/lib/mta/sasl": use lmdb:PATH; the cache is not used',
            False,
        )
    ]


def test_a_bad_option_in_a_master_cf_override_is_found(tmp_path):
    (tmp_path / "main.cf").write_text("myhostname = mx.example\n")
    (tmp_path / "master.cf").write_text(
        "relay unix - - n - - smtp\n  -o smtp_sasl_tls_security_options=noanonymus\n"
    )
    got = [str(p) for p in config_problems(Config(str(tmp_path))) if p.fatal]
    assert len(got) == 1 and "smtp_sasl_tls_security_options" in got[0] and "noanonymus" in got[0]
