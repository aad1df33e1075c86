"""postscreen_access_list: permit_mynetworks, literal words, and a real cidr: table."""

from __future__ import annotations

import pytest

from mta import log
from mta.config import ConfigError, load_config
from mta.maps import clear_cache
from mta.postscreen.access import PSC_ACL_DUNNO, PSC_ACL_PERMIT, PSC_ACL_REJECT, AccessList


@pytest.fixture
def acl_from(tmp_path):
    maillog = tmp_path / "maillog"

    def build(value: str, extra: str = "") -> AccessList:
        conf = tmp_path / "conf"
        conf.mkdir(exist_ok=True)
        (conf / "main.cf").write_text(
            f"queue_directory = {tmp_path}/q\nmaillog_file = {maillog}\n"
            f"mynetworks = 192.168.0.0/16\npostscreen_access_list = {value}\n" + extra
        )
        clear_cache()
        cfg = load_config(str(conf))
        log.init("postscreen", cfg)
        return AccessList(cfg)

    yield build
    log.init("postscreen", None, stdout=False)


def test_readme_list_permits_mynetworks_and_follows_the_cidr_table(tmp_path, acl_from):
    cidr = tmp_path / "postscreen_access.cidr"
    cidr.write_text(
        "192.0.2.0/28 reject\n192.0.2.16/28 permit\n198.51.100.0/24 dunno\n"
        "203.0.113.0/24 OK\n0.0.0.0/0 dunno\n"
    )
    acl = acl_from(f"permit_mynetworks, cidr:{cidr}")
    assert acl.check("192.168.3.4") == PSC_ACL_PERMIT
    assert acl.check("192.0.2.5") == PSC_ACL_REJECT
    assert acl.check("192.0.2.20") == PSC_ACL_PERMIT
    assert acl.check("198.51.100.1") == PSC_ACL_DUNNO
    assert acl.check("203.0.113.9") == PSC_ACL_DUNNO  # "OK" is no postscreen word: logged
    log.flush()
    assert "unknown result OK for 203.0.113.9" in (tmp_path / "maillog").read_text()


def test_default_permits_mynetworks_only(acl_from):
    acl = acl_from("permit_mynetworks")
    assert acl.check("192.168.0.1") == PSC_ACL_PERMIT
    assert acl.check("10.0.0.1") == PSC_ACL_DUNNO


def test_literal_words_end_the_search(acl_from):
    assert acl_from("reject, permit").check("10.0.0.1") == PSC_ACL_REJECT
    assert acl_from("dunno, permit").check("10.0.0.1") == PSC_ACL_DUNNO


def test_unknown_element_is_a_configuration_error(acl_from):
    with pytest.raises(ConfigError, match="postscreen_access_list"):
        acl_from("permit_sasl_authenticated")


def test_missing_table_is_a_configuration_error(tmp_path, acl_from):
    with pytest.raises(ConfigError, match="postscreen_access_list"):
        acl_from(f"cidr:{tmp_path}/nope.cidr")
