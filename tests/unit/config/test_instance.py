"""The embedded instance: created on first use, an untouched old master.cf upgraded."""

from mta.config.instance import (
    MASTER_CF_TEXT,
    MASTER_CF_TEXT_0_1,
    MASTER_CF_TEXT_0_2,
    MASTER_CF_TEXT_0_3,
    MASTER_CF_TEXT_0_4,
    QMQP_PORT,
    SMTP_PORT,
    ensure_instance,
)


def test_first_use_creates_the_instance_with_delivery_services(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    top = ensure_instance()
    text = (tmp_path / "mta" / "master.cf").read_text()
    assert top == str(tmp_path / "mta")
    for service in ("qmgr", "smtp", "local", "error"):
        assert f"\n{service} " in text
    assert "\nshowq     unix  n " in text  # public/showq, as Postfix has it
    assert (tmp_path / "mta" / "main.cf").exists()


def test_untouched_old_master_cf_is_upgraded(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    (tmp_path / "mta").mkdir()
    path = tmp_path / "mta" / "master.cf"
    path.write_text(MASTER_CF_TEXT_0_1.format(smtp=SMTP_PORT, qmqp=QMQP_PORT))
    ensure_instance()
    assert path.read_text() == MASTER_CF_TEXT.format(smtp=SMTP_PORT, qmqp=QMQP_PORT)


def test_untouched_master_cf_before_showq_gets_it(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    (tmp_path / "mta").mkdir()
    path = tmp_path / "mta" / "master.cf"
    path.write_text(MASTER_CF_TEXT_0_2.format(smtp=SMTP_PORT, qmqp=QMQP_PORT))
    ensure_instance()
    assert path.read_text() == MASTER_CF_TEXT.format(smtp=SMTP_PORT, qmqp=QMQP_PORT)


def test_untouched_master_cf_before_anvil_gets_it(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    (tmp_path / "mta").mkdir()
    path = tmp_path / "mta" / "master.cf"
    path.write_text(MASTER_CF_TEXT_0_3.format(smtp=SMTP_PORT, qmqp=QMQP_PORT))
    assert "anvil" not in path.read_text()
    ensure_instance()
    assert "\nanvil     unix  -       -       n       -       1       anvil\n" in path.read_text()
    assert path.read_text() == MASTER_CF_TEXT.format(smtp=SMTP_PORT, qmqp=QMQP_PORT)


def test_untouched_master_cf_before_tlsmgr_gets_it(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    (tmp_path / "mta").mkdir()
    path = tmp_path / "mta" / "master.cf"
    path.write_text(MASTER_CF_TEXT_0_4.format(smtp=SMTP_PORT, qmqp=QMQP_PORT))
    assert "tlsmgr" not in path.read_text()
    ensure_instance()
    # Postfix's entry: a wakeup every 1000s when used, one process
    assert "\ntlsmgr    unix  -       -       n       1000?   1       tlsmgr\n" in path.read_text()
    assert path.read_text() == MASTER_CF_TEXT.format(smtp=SMTP_PORT, qmqp=QMQP_PORT)


def test_edited_master_cf_is_left_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    (tmp_path / "mta").mkdir()
    path = tmp_path / "mta" / "master.cf"
    mine = MASTER_CF_TEXT_0_1.format(smtp=SMTP_PORT, qmqp=QMQP_PORT) + "# mine\n"
    path.write_text(mine)
    ensure_instance()
    assert path.read_text() == mine


def test_first_use_ships_aliases_built_into_the_alias_database(tmp_path, monkeypatch):
    import getpass

    from mta.config import load_config
    from mta.maps import open_map

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    monkeypatch.delenv("MTA_CONFIG_DIR", raising=False)
    top = tmp_path / "mta"
    cfg = load_config()
    spec = f"lmdb:{top}/aliases"
    assert cfg.get("alias_maps") == cfg.get("alias_database") == spec
    assert (top / "aliases.lmdb").exists()
    user = getpass.getuser()
    table = open_map(spec, cfg)
    for name in ("postmaster", "MAILER-DAEMON", "abuse", "root"):
        if name != user:  # "root: root" would only point at itself
            assert table.lookup(name.lower()) == user, name


def test_the_host_name_users_type_is_a_local_destination(tmp_path, monkeypatch):
    import socket

    from mta.common.match_list import DomainList
    from mta.config import load_config

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    monkeypatch.delenv("MTA_CONFIG_DIR", raising=False)
    cfg = load_config()
    local = DomainList(cfg.get_list("mydestination"), cfg, parent_matches=False)
    for name in ("localhost", "localhost.localdomain", cfg.get("myhostname")):
        assert local.match(name), name
    assert local.match(socket.gethostname())
    assert not local.match("example.com")


def test_untouched_main_cf_without_aliases_is_upgraded(tmp_path, monkeypatch):
    from mta.config.instance import main_cf_text, main_cf_text_0_3

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    top = tmp_path / "mta"
    top.mkdir()
    (top / "main.cf").write_text(main_cf_text_0_3(str(top)))
    ensure_instance()
    assert (top / "main.cf").read_text() == main_cf_text(str(top))
    edited = main_cf_text_0_3(str(top)) + "relayhost = [smart]\n"
    (top / "main.cf").write_text(edited)
    ensure_instance()
    assert (top / "main.cf").read_text() == edited


def test_untouched_master_cf_before_submission_gets_the_commented_entries(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    (tmp_path / "mta").mkdir()
    path = tmp_path / "mta" / "master.cf"
    path.write_text(MASTER_CF_TEXT_0_4.format(smtp=SMTP_PORT, qmqp=QMQP_PORT))
    ensure_instance()
    assert path.read_text() == MASTER_CF_TEXT.format(smtp=SMTP_PORT, qmqp=QMQP_PORT)
    assert "\n#127.0.0.1:10465 inet n" in path.read_text()


def test_submission_entries_are_off_and_carry_postfix_overrides_when_uncommented(tmp_path):
    from mta.config.master_cf import read_master_cf

    text = MASTER_CF_TEXT.format(smtp=SMTP_PORT, qmqp=QMQP_PORT)
    path = tmp_path / "master.cf"
    path.write_text(text)
    assert [s.name for s in read_master_cf(str(path)) if s.command == "smtpd"] == [
        f"127.0.0.1:{SMTP_PORT}"
    ]
    uncommented = "".join(
        line[1:] + "\n" if line.startswith(("#127.0.0.1:10", "#  -o ")) else line + "\n"
        for line in text.splitlines()
    )
    path.write_text(uncommented)
    services = {s.name: s for s in read_master_cf(str(path)) if s.command == "smtpd"}
    sub, subs = services["127.0.0.1:10587"], services["127.0.0.1:10465"]
    assert sub.overrides["smtpd_tls_security_level"] == "encrypt"
    assert sub.overrides["smtpd_tls_auth_only"] == "yes"
    assert sub.overrides["syslog_name"] == "mta/submission"
    assert subs.overrides["smtpd_tls_wrappermode"] == "yes"
    assert subs.overrides["syslog_name"] == "mta/submissions"
    for entry in (sub, subs):
        assert entry.overrides["smtpd_sasl_auth_enable"] == "yes"
        assert entry.overrides["smtpd_reject_unlisted_recipient"] == "no"
        assert entry.overrides["smtpd_client_restrictions"] == ""
        want = "permit_sasl_authenticated,reject"
        assert entry.overrides["smtpd_recipient_restrictions"] == want
