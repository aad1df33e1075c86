"""config_problems(): every problem of main.cf and master.cf, with file and line."""

import os
import pwd

import pytest

from mta.config import Config
from mta.config.validate import config_problems
from mta.maps.dict_lmdb import build_lmdb
from tests.support.dkim_keys import write_keys

MASTER_CF = "smtp inet n - n - - smtpd\nrelay unix - - n - - smtp\n"


@pytest.fixture
def make(tmp_path):
    def make(main: str, master: str = MASTER_CF) -> Config:
        (tmp_path / "main.cf").write_text(main)
        (tmp_path / "master.cf").write_text(master)
        return Config(str(tmp_path))

    return make


def lines(cfg, fatal=None, open_tables=False):
    return [
        str(p)
        for p in config_problems(cfg, open_tables=open_tables)
        if fatal is None or p.fatal == fatal
    ]


def test_a_clean_configuration_has_no_problem(make):
    assert lines(make("myhostname = mx.example\nmessage_size_limit = 1000\n")) == []


def test_every_bad_value_is_reported_not_only_the_first(make, tmp_path):
    cfg = make("message_size_limit = banana\nsmtpd_timeout = soon\nsoft_bounce = maybe\n")
    got = lines(cfg, fatal=True)
    main = tmp_path / "main.cf"
    assert got == [
        f'{main}, line 1: parameter message_size_limit: bad size value "banana" '
        "(expected a number of bytes)",
        f'{main}, line 2: parameter smtpd_timeout: bad time value "soon" '
        "(expected a number with unit s, m, h, d or w)",
        f'{main}, line 3: parameter soft_bounce: bad boolean value "maybe" (expected yes or no)',
    ]


def test_a_bad_netmask_in_mynetworks_is_fatal(make, tmp_path):
    got = lines(make("\nmynetworks = 127.0.0.0/8, 127.0.0.1/33\n"), fatal=True)
    assert got == [
        f"{tmp_path / 'main.cf'}, line 2: parameter mynetworks: "
        'bad network pattern "127.0.0.1/33": need network/prefix without host bits'
    ]


def test_an_unknown_table_type_is_fatal(make, tmp_path):
    got = lines(make("transport_maps = berkeley:/etc/transport\n"), fatal=True)
    assert got == [
        f"{tmp_path / 'main.cf'}, line 1: parameter transport_maps: "
        "berkeley:/etc/transport: unsupported dictionary type: berkeley"
    ]


def test_a_table_in_a_match_list_is_checked_too(make):
    got = lines(make("relay_domains = example.com, nosuch:/x\n"), fatal=True)
    assert len(got) == 1 and "unsupported dictionary type: nosuch" in got[0]


def test_a_missing_table_file_is_fatal_only_when_tables_are_opened(make, tmp_path):
    cfg = make(f"transport_maps = lmdb:{tmp_path}/transport\n")
    assert lines(cfg, fatal=True) == []
    got = lines(cfg, fatal=True, open_tables=True)
    assert len(got) == 1
    assert got[0].startswith(f"{tmp_path / 'main.cf'}, line 1: parameter transport_maps: ")
    assert "No such file or directory" in got[0]
    build_lmdb(f"{tmp_path}/transport.lmdb", [("example.com", "smtp:[mx]")])
    assert lines(cfg, fatal=True, open_tables=True) == []


def test_proxy_tables_are_checked_through_to_the_table_they_name(make, tmp_path):
    cfg = make(f"relay_recipient_maps = proxy:lmdb:{tmp_path}/nosuch\n")
    got = lines(cfg, fatal=True, open_tables=True)
    assert len(got) == 1 and "nosuch.lmdb" in got[0]


def test_a_typo_is_warned_with_file_and_line(make, tmp_path):
    got = lines(make("myhostname = mx.example\nmesage_size_limit = 10\n"), fatal=False)
    assert got == [f"{tmp_path / 'main.cf'}, line 2: unused parameter: mesage_size_limit=10"]


def test_a_name_used_as_dollar_name_is_no_typo(make):
    cfg = make(
        "my_checks = permit_mynetworks, reject\n"
        "smtpd_recipient_restrictions = $my_checks\n"
        "relay_extra = example.net\n",
        MASTER_CF + "  -o relay_domains=${relay_extra}\n",
    )
    assert lines(cfg) == []


def test_restriction_classes_and_transport_parameters_are_no_typos(make):
    cfg = make(
        "smtpd_restriction_classes = strict\nstrict = reject\n"
        "relay_destination_concurrency_limit = 5\n"
    )
    assert lines(cfg) == []


def test_a_transport_parameter_of_a_missing_transport_is_warned(make):
    got = lines(make("nosuch_destination_concurrency_limit = 5\n"))
    assert len(got) == 1 and "unused parameter: nosuch_destination_concurrency_limit=5" in got[0]


def test_an_unknown_override_is_warned_at_its_master_cf_line(make, tmp_path):
    got = lines(make("", MASTER_CF + "  -o smtpd_bogus=1\n"))
    assert got == [
        f"{tmp_path / 'master.cf'}, line 2: service relay/unix: unused parameter: smtpd_bogus=1"
    ]


def test_a_bad_override_value_is_fatal_at_its_master_cf_line(make, tmp_path):
    got = lines(make("", "smtp inet n - n - - smtpd -o smtpd_timeout=xx\n"), fatal=True)
    assert got == [
        f'{tmp_path / "master.cf"}, line 1: parameter smtpd_timeout: bad time value "xx" '
        "(expected a number with unit s, m, h, d or w)"
    ]


def test_an_override_that_breaks_a_main_cf_setting_is_found(make, tmp_path):
    cfg = make(
        "mynetworks = $extra_nets\nextra_nets = 10.0.0.0/8\n",
        "smtp inet n - n - - smtpd -o extra_nets=10.0.0.1/8\n",
    )
    got = lines(cfg, fatal=True)
    assert len(got) == 1 and 'bad network pattern "10.0.0.1/8"' in got[0]


def test_a_master_cf_error_is_one_problem(make, tmp_path):
    got = lines(make("", "smtp inet n -\n"))
    assert len(got) == 1 and got[0].startswith(f"{tmp_path / 'master.cf'}, line 1: ")


def test_an_unimplemented_parameter_set_away_from_its_default_is_warned(make, tmp_path):
    got = lines(make("smtpd_client_port_logging = yes\nbiff = yes\n"))
    assert got == [
        f"{tmp_path / 'main.cf'}, line 1: smtpd_client_port_logging is not implemented: "
        "the setting smtpd_client_port_logging = yes has no effect"
    ]


def test_an_unimplemented_parameter_in_an_override_is_warned(make, tmp_path):
    got = lines(make("", "smtp inet n - n - - smtpd -o smtpd_client_port_logging=yes\n"))
    assert got == [
        f"{tmp_path / 'master.cf'}, line 1: smtpd_client_port_logging is not implemented: "
        "the setting smtpd_client_port_logging = yes has no effect"
    ]


def test_a_table_a_service_writes_is_not_opened(make, tmp_path):
    cfg = make(f"address_verify_map = lmdb:{tmp_path}/verify_cache\n")
    assert lines(cfg, open_tables=True) == []
    cfg = make("address_verify_map = nosuch:/x\n")
    assert "unsupported dictionary type: nosuch" in lines(cfg, fatal=True)[0]


def test_an_alias_table_that_does_not_open_is_a_warning(make, tmp_path):
    cfg = make(f"alias_maps = lmdb:{tmp_path}/aliases\n")
    assert lines(cfg, fatal=True, open_tables=True) == []
    [warning] = lines(cfg, fatal=False, open_tables=True)
    assert warning.startswith(f"{tmp_path / 'main.cf'}, line 1: parameter alias_maps: ")
    assert "aliases.lmdb" in warning


def test_setting_the_value_mta_behaves_as_is_no_warning(make):
    assert lines(make("biff = no\nsmtpd_tls_security_level = none\n")) == []
    assert lines(make("allow_untrusted_routing = no\n")) == []


def test_the_settings_of_debians_stock_main_cf_are_quiet(make):
    """The parameters Debian's postfix package writes into a new main.cf (README path
    off, biff off, compatibility level) raise nothing: a Postfix admin's file reads clean."""
    main = (
        "smtpd_banner = $myhostname ESMTP $mail_name (Debian/GNU)\nbiff = no\n"
        "append_dot_mydomain = no\nreadme_directory = no\ncompatibility_level = 3.6\n"
        "html_directory = no\n"
    )
    assert lines(make(main)) == []


def test_asking_to_relay_sender_routed_addresses_is_warned(make, tmp_path):
    """mta never relays user%site@relay for an untrusted client (Postfix's default); a
    main.cf that asks for it is told the setting has no effect."""
    assert lines(make("allow_untrusted_routing = yes\n")) == [
        f"{tmp_path / 'main.cf'}, line 1: allow_untrusted_routing is not implemented: "
        "the setting allow_untrusted_routing = yes has no effect"
    ]


def test_a_word_outside_its_fixed_set_is_fatal(make, tmp_path):
    cfg = make(
        "mynetworks_style = hosts\nnotify_classes = resource, sofware\n"
        "smtp_tls_security_level = Encrypt\n"
    )
    assert lines(cfg, fatal=True) == [
        f'{tmp_path / "main.cf"}, line 1: parameter mynetworks_style: bad value "hosts" '
        "(expected host or subnet or class)",
        f'{tmp_path / "main.cf"}, line 2: parameter notify_classes: bad value "sofware" '
        "(expected bounce or 2bounce or data or delay or policy or protocol or resource "
        "or software)",
    ]


def test_a_session_ticket_cipher_other_than_aes_cbc_is_fatal(make, tmp_path):
    # OpenSSL's ticket key is AES-256-CBC; empty turns tickets off
    for ok in ("aes-256-cbc", "aes-128-cbc", ""):
        assert lines(make(f"tls_session_ticket_cipher = {ok}\n"), fatal=True) == []
    assert lines(make("tls_session_ticket_cipher = aes-256-gcm\n"), fatal=True) == [
        f"{tmp_path / 'main.cf'}, line 1: parameter tls_session_ticket_cipher: bad value "
        '"aes-256-gcm" (expected aes-256-cbc or aes-128-cbc)'
    ]


def test_the_smtp_tls_session_cache_must_be_an_lmdb_table(make, tmp_path):
    assert lines(make(f"smtp_tls_session_cache_database = lmdb:{tmp_path}/scache\n")) == []
    assert lines(make("lmtp_tls_session_cache_database = texthash:/x\n"), fatal=True) == [
        f"{tmp_path / 'main.cf'}, line 1: parameter lmtp_tls_session_cache_database: "
        'bad value "texthash:/x" (expected lmdb:PATH)'
    ]


def test_smtpds_session_cache_takes_debians_btree_and_nothing_but_lmdb(make, tmp_path):
    debian = "smtpd_tls_session_cache_database = btree:${data_directory}/smtpd_scache\n"
    assert lines(make(debian)) == []
    assert lines(make("smtpd_tls_session_cache_database = cdb:/x\n"), fatal=True) == [
        f"{tmp_path / 'main.cf'}, line 1: parameter smtpd_tls_session_cache_database: "
        'bad value "cdb:/x" (expected lmdb:PATH)'
    ]


def test_a_bad_concurrency_feedback_is_fatal(make, tmp_path):
    cfg = make(
        "default_destination_concurrency_negative_feedback = 1/concurency\n"
        "relay_destination_concurrency_positive_feedback = 1/concurrency\n"
    )
    got = lines(cfg, fatal=True)
    assert len(got) == 1
    assert got[0].startswith(
        f"{tmp_path / 'main.cf'}, line 1: parameter "
        "default_destination_concurrency_negative_feedback: bad feedback value"
    )


def test_tls_encrypt_without_a_certificate_is_warned_naming_the_parameter(make, tmp_path):
    # smtpd_tls_security_level = encrypt is implemented now; without a certificate
    # smtpd answers STARTTLS with 454 (and takes no mail), as Postfix does
    cfg = make("", "submission inet n - n - - smtpd -o smtpd_tls_security_level=encrypt\n")
    assert lines(cfg, fatal=True) == []
    assert lines(cfg) == [
        f"{tmp_path / 'main.cf'}: parameter smtpd_tls_cert_file: TLS not available: "
        "smtpd_tls_cert_file: no server certificate configured"
    ]


def test_a_tls_policy_table_is_accepted_now_and_opened_like_any_table(make, tmp_path):
    cfg = make("smtp_tls_policy_maps = texthash:/nonexistent/tls_policy\n", "")
    assert lines(cfg, fatal=True) == []
    (problem,) = lines(cfg, fatal=True, open_tables=True)
    assert "smtp_tls_policy_maps" in problem and "/nonexistent/tls_policy" in problem


def test_client_legacy_certificates_beside_chain_files_are_warned(make, tmp_path):
    cfg = make(
        "smtp_tls_security_level = may\nsmtp_tls_chain_files = /nonexistent/chain.pem\n"
        "smtp_tls_eccert_file = /nonexistent/ec.pem\n",
        "",
    )
    assert (
        f"{tmp_path / 'main.cf'}, line 3: parameter smtp_tls_eccert_file: "
        "ignored: smtp_tls_chain_files is set"
    ) in lines(cfg, fatal=False)


def test_client_tls_match_lists_and_exclusions_may_use_colons(make):
    cfg = make(
        "smtp_tls_security_level = verify\n"
        "smtp_tls_verify_cert_match = hostname:nexthop, .example.com\n"
        "smtp_tls_secure_cert_match = nexthop:dot-nexthop\n"
        "smtp_tls_exclude_ciphers = aNULL:MD5\n"
        "smtp_tls_mandatory_exclude_ciphers = 3DES:RC4\n"
        "smtp_tls_fingerprint_cert_match = AB:CD:EF, 01:23:45\n",
        "",
    )
    assert lines(cfg, fatal=True) == []


@pytest.mark.parametrize(
    "setting,param,text",
    [
        (
            "smtp_tls_mandatory_protocols = >=TLSv1.9",
            "smtp_tls_mandatory_protocols",
            "unknown TLS protocol version: TLSv1.9",
        ),
        ("smtp_tls_mandatory_ciphers = strong", "smtp_tls_mandatory_ciphers", "cipher grade"),
    ],
)
def test_client_tls_values_that_do_not_parse_are_fatal_naming_the_parameter(
    make, tmp_path, setting, param, text
):
    cfg = make(f"smtp_tls_security_level = verify\n{setting}\n", "")
    found = [p for p in lines(cfg, fatal=True) if f"parameter {param}:" in p]
    assert found and text in found[0], lines(cfg, fatal=True)
    assert found[0].startswith(str(tmp_path / "main.cf"))


@pytest.mark.parametrize(
    "setting,param,text",
    [
        ("smtp_tls_CAfile = /nonexistent/ca.pem", "smtp_tls_CAfile", "/nonexistent/ca.pem"),
        ("smtp_tls_cert_file = /nonexistent/c.pem", "smtp_tls_cert_file", "/nonexistent/c.pem"),
        ("smtp_tls_fingerprint_digest = sha3000", "smtp_tls_fingerprint_digest", "sha3000"),
    ],
)
def test_client_tls_settings_it_cannot_use_are_warned_naming_the_parameter(
    make, tmp_path, setting, param, text
):
    level = "fingerprint" if "digest" in setting else "verify"
    cfg = make(f"smtp_tls_security_level = {level}\n{setting}\n", "")
    assert lines(cfg, fatal=True) == []
    found = [p for p in lines(cfg) if f"parameter {param}:" in p]
    assert found and text in found[0], lines(cfg)
    assert found[0].startswith(str(tmp_path / "main.cf"))


def test_client_sasl_is_accepted_now_that_it_is_implemented(make):
    cfg = make("smtp_sasl_auth_enable = yes\nsmtp_sasl_security_options = noanonymous\n", "")
    assert lines(cfg, fatal=True) == []
    assert lines(cfg) == []


@pytest.mark.parametrize(
    "setting",
    [
        "content_filter = amavis:[127.0.0.1]:10024",
        "smtpd_proxy_filter = 127.0.0.1:10025",
        "receive_override_options = no_address_mappings",
        "smtpd_authorized_xforward_hosts = 127.0.0.0/8",
        "smtpd_authorized_xclient_hosts = 127.0.0.1",
    ],
)
def test_content_filters_are_accepted_now_that_they_are_implemented(make, setting):
    cfg = make(setting + "\n", "")
    assert lines(cfg, fatal=True) == []
    assert lines(cfg) == []


def test_milters_are_accepted_now_that_they_are_implemented(make):
    cfg = make("smtpd_milters = inet:127.0.0.1:8891\nmilter_default_action = accept\n", "")
    assert lines(cfg, fatal=True) == []
    assert lines(cfg) == []


def test_the_per_client_limits_anvil_enforces_are_accepted(make):
    cfg = make(
        "smtpd_client_connection_count_limit = 10\n"
        "smtpd_client_connection_rate_limit = 30\n"
        "smtpd_client_message_rate_limit = 100\n"
        "smtpd_client_recipient_rate_limit = 200\n",
        "",
    )
    assert lines(cfg) == []


def test_dkim_keys_are_checked(make, tmp_path):
    keys = tmp_path / "keys"
    keys.mkdir()
    _, table = write_keys(keys, [("good", "ed25519"), ("loose", "ed25519")])
    os.chmod(keys / "loose.pem", 0o644)
    signing = tmp_path / "signing"
    signing.write_text("@example.org good, missing\n")
    me = pwd.getpwuid(os.getuid()).pw_name
    cfg = make(
        f"mail_owner = {me}\n"
        f"dkim_key_table = texthash:{table}\n"
        f"dkim_signing_table = texthash:{signing}\n"
    )
    got = lines(cfg, fatal=False)
    main = tmp_path / "main.cf"
    assert f"{main}, line 2: parameter dkim_key_table: key loose: {keys / 'loose.pem'}: " in got[0]
    assert "key file is open to others" in got[0]
    assert got[1:] == [
        f"{main}, line 3: parameter dkim_signing_table: names key 'missing', not in dkim_key_table"
    ]
    assert lines(cfg, fatal=True) == []


def test_suppression_and_event_settings_are_checked(make, tmp_path):
    classes = tmp_path / "classes"
    classes.write_text("/quota/ mailbox_full\n/x/ mailbox_ful\n")
    cfg = make(
        "suppression_map = regexp:/etc/nothing\n"
        "suppression_classes = invalid_mailbox:400d, bogus:1d\n"
        f"event_log_file = {tmp_path}/no/such/events.jsonl\n"
        f"bounce_class_maps = regexp:{classes}\n"
    )
    main = tmp_path / "main.cf"
    assert lines(cfg, fatal=True) == [
        f'{main}, line 1: parameter suppression_map: bad value "regexp:/etc/nothing"'
        " (expected lmdb:PATH)",
        f"{main}, line 2: parameter suppression_classes: unknown bounce class 'bogus'",
    ]
    assert lines(cfg, fatal=False) == [
        f"{main}, line 3: parameter event_log_file: no directory for {tmp_path}/no/such/events.jsonl:"
        " no events are written",
        f"{main}, line 4: parameter bounce_class_maps: regexp:{classes}, line 2:"
        " 'mailbox_ful' is not a bounce class",
    ]


def test_a_bouncein_service_is_a_transport(make):
    cfg = make(
        "bouncein_destination_concurrency_limit = 2\nbouncein_report_size_limit = 2000000\n",
        MASTER_CF + "bouncein unix - - n - - bouncein\n",
    )
    assert lines(cfg) == []
