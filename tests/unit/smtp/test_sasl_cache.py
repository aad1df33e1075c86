"""smtp_sasl_auth_cache_name: a login the smarthost refused with 535 is not tried again
(aiosmtpd with AUTH as the smarthost, the cache in a real LMDB file)."""

from __future__ import annotations

import time

from mta.smtp import deliver
from tests.support.agent import queue_message, request_for, run_agent
from tests.unit.smtp.test_sasl_client import USER, sasl_cfg, smarthost

WRONG = f"[127.0.0.1] {USER}:wrong-pw\n"
OPTS = "smtp_sasl_security_options = noanonymous\n"


def deliver_twice(tmp_path, extra, pause=0.0):
    ctl, handler = smarthost(None)
    cache = f"smtp_sasl_auth_cache_name = lmdb:{tmp_path}/sasl_auth_cache\n"
    cfg = sasl_cfg(tmp_path, ctl.port, OPTS + cache + extra, passwd=WRONG)
    statuses = []
    try:
        for i in range(2):
            if i:
                time.sleep(pause)
            msg = queue_message(cfg, [f"u{i}@example.com"])
            (st,) = run_agent(deliver, cfg, request_for(msg, "[127.0.0.1]"), tmp_path).statuses
            statuses.append(st)
    finally:
        ctl.stop()
    return handler, statuses


def test_a_refused_login_is_not_tried_again(tmp_path):
    handler, (first, second) = deliver_twice(tmp_path, "")
    assert [ok for *_, ok in handler.logins] == [False]  # one attempt only
    assert (first.action, first.dsn) == ("delayed", "4.7.8")
    assert (second.action, second.dsn, second.reason) == ("delayed", "4.7.8", first.reason)
    assert second.reason.startswith(
        "SASL authentication failed; server 127.0.0.1[127.0.0.1] said: 535 5.7.8"
    )
    assert (tmp_path / "sasl_auth_cache.lmdb").exists()
    assert b"wrong-pw" not in (tmp_path / "sasl_auth_cache.lmdb").read_bytes()


def test_the_saved_reply_bounces_without_soft_bounce(tmp_path):
    handler, statuses = deliver_twice(tmp_path, "smtp_sasl_auth_soft_bounce = no\n")
    assert len(handler.logins) == 1
    assert [(s.action, s.dsn) for s in statuses] == [("failed", "5.7.8")] * 2


def test_an_expired_entry_lets_the_login_be_tried_again(tmp_path):
    handler, _ = deliver_twice(tmp_path, "smtp_sasl_auth_cache_time = 1s\n", pause=1.2)
    assert len(handler.logins) == 2


def test_without_the_cache_every_delivery_tries(tmp_path):
    ctl, handler = smarthost(None)
    cfg = sasl_cfg(tmp_path, ctl.port, OPTS, passwd=WRONG)
    try:
        for i in range(2):
            msg = queue_message(cfg, [f"u{i}@example.com"])
            run_agent(deliver, cfg, request_for(msg, "[127.0.0.1]"), tmp_path)
    finally:
        ctl.stop()
    assert len(handler.logins) == 2


def test_other_credentials_are_tried(tmp_path):
    from mta.common.kv_store import MemoryStore
    from mta.smtp.sasl_cache import AuthCache

    cache = AuthCache(MemoryStore(), 3600)
    cache.remember("relay.example", "u", "old", "535 5.7.8 no", 1000.0)
    assert cache.refused("RELAY.example", "u", "old", 1001.0) == "535 5.7.8 no"
    assert cache.refused("relay.example", "u", "new", 1001.0) is None
    assert cache.refused("relay.example", "u", "old", 4600.0) is None
    cache.forget("relay.example")
    assert cache.refused("relay.example", "u", "old", 1001.0) is None
