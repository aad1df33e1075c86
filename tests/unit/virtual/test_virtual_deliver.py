"""virtual agent: mbox and Maildir under virtual_mailbox_base, ids, limits, unknown users."""

import mailbox

from mta.config import load_config
from mta.virtual import deliver
from tests.support.agent import queue_message, request_for, run_agent
from tests.support.instance import make_instance


def setup(tmp_path, rcpts, extra=""):
    base = tmp_path / "vmail"
    base.mkdir()
    (base / "example.com").mkdir()
    table = tmp_path / "vmailbox"
    table.write_text("alice@example.com example.com/alice\nbob@example.com example.com/bob/\n")
    cdir = make_instance(
        tmp_path,
        f"virtual_mailbox_maps = texthash:{table}\n"
        f"virtual_mailbox_base = {base}\n"
        "virtual_uid_maps = static:0\nvirtual_gid_maps = static:0\n"
        "virtual_minimum_uid = 0\ndeliver_lock_delay = 0\n" + extra,
    )
    cfg = load_config(str(cdir))
    msg = queue_message(cfg, rcpts)
    return cfg, msg, base


def run(cfg, msg, tmp_path):
    return run_agent(deliver, cfg, request_for(msg, "example.com", "virtual"), tmp_path).statuses


def test_mbox_and_maildir(tmp_path):
    cfg, msg, base = setup(tmp_path, ["alice@example.com", "bob@example.com"])
    a, b = run(cfg, msg, tmp_path)
    assert (a.action, a.reason, a.relay) == ("delivered", "delivered to mailbox", "virtual")
    assert (b.action, b.reason) == ("delivered", "delivered to maildir")
    [m] = list(mailbox.mbox(str(base / "example.com" / "alice")))
    assert m["Delivered-To"] == "alice@example.com"
    assert len(mailbox.Maildir(str(base / "example.com" / "bob"), create=False)) == 1


def test_unknown_user_bounces(tmp_path):
    cfg, msg, _ = setup(tmp_path, ["carol@example.com"])
    [st] = run(cfg, msg, tmp_path)
    assert (st.action, st.dsn, st.reason) == (
        "failed",
        "5.1.1",
        'unknown user: "carol@example.com"',
    )


def test_uid_below_minimum_defers(tmp_path):
    cfg, msg, _ = setup(tmp_path, ["alice@example.com"], "virtual_minimum_uid = 100\n")
    [st] = run(cfg, msg, tmp_path)
    assert st.action == "delayed" and "bad uid 0" in st.reason


def test_mailbox_limit_bounces(tmp_path):
    cfg, msg, base = setup(tmp_path, ["alice@example.com"], "virtual_mailbox_limit = 50\n")
    [st] = run(cfg, msg, tmp_path)
    assert (st.action, st.dsn) == ("failed", "5.2.2")
    assert (base / "example.com" / "alice").read_bytes() == b""
