"""What mta start says: where SMTP listens, where mail goes, why it failed."""

import os
import pwd

from mta.cli import startup
from mta.config import Config


def config(tmp_path, main: str, master: str) -> Config:
    (tmp_path / "main.cf").write_text(f"queue_directory = {tmp_path}/spool\n{main}")
    (tmp_path / "master.cf").write_text(master)
    return Config(str(tmp_path))


def test_every_inet_smtpd_is_named_with_its_addresses(tmp_path):
    cfg = config(
        tmp_path,
        "inet_interfaces = 127.0.0.1, ::1\ninet_protocols = all\n",
        "smtp inet n - n - - smtpd\n"
        "127.0.0.1:2587 inet n - n - - smtpd\n"
        "127.0.0.1:6280 inet n - n - - qmqpd\n"
        "pickup unix n - n 60 1 pickup\n",
    )
    addrs = startup.smtp_addresses(cfg)
    assert addrs[0] == "127.0.0.1:25"
    assert addrs[-1] == "127.0.0.1:2587"
    assert "127.0.0.1:6280" not in addrs


def test_where_local_mail_goes(tmp_path):
    me = pwd.getpwuid(os.getuid())
    cfg = config(tmp_path, f"mail_spool_directory = {tmp_path}/mail\n", "")
    assert startup.where_lines(cfg) == [
        "no SMTP service in master.cf",
        f"local mail for {me.pw_name} is delivered to {tmp_path}/mail/{me.pw_name}",
    ]
    cfg = config(tmp_path, "home_mailbox = Maildir/\n", "")
    assert startup.where_lines(cfg)[1].endswith(f"{os.path.join(me.pw_dir, 'Maildir/')} (Maildir)")


def test_the_failure_reason_is_what_was_logged_after_the_mark(tmp_path):
    log = tmp_path / "maillog"
    log.write_text("Dec  2 12:00:00 h mta/master[1]: error: an old failure\n")
    cfg = config(tmp_path, f"maillog_file = {log}\n", "")
    mark = startup.log_size(cfg)
    with open(log, "a") as f:
        f.write("Dec  2 12:00:01 h mta/master[2]: reading\n")
        f.write("Dec  2 12:00:01 h mta/master[2]: error: bind 127.0.0.1 port 25: Address in use\n")
    assert startup.failure_reason(cfg, mark) == "bind 127.0.0.1 port 25: Address in use"
    assert startup.failure_reason(cfg, startup.log_size(cfg)) is None
