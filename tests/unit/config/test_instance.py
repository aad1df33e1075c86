"""The embedded instance: created on first use, an untouched old master.cf upgraded."""

from mta.config.instance import (
    MASTER_CF_TEXT,
    MASTER_CF_TEXT_0_1,
    MASTER_CF_TEXT_0_2,
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


def test_edited_master_cf_is_left_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    (tmp_path / "mta").mkdir()
    path = tmp_path / "mta" / "master.cf"
    mine = MASTER_CF_TEXT_0_1.format(smtp=SMTP_PORT, qmqp=QMQP_PORT) + "# mine\n"
    path.write_text(mine)
    ensure_instance()
    assert path.read_text() == mine
