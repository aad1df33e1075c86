"""cleanup and content filters: content_filter, FILTER, internal_mail_filter_classes and
receive_override_options (no_header_body_checks, no_address_mappings)."""

from mta.maps import clear_cache

MSG = b"Subject: buy now\r\nFrom: a@example.org\r\n\r\nline one\r\nclick here\r\n"
FILTER = "content_filter = scan:[127.0.0.1]:10025\n"


def make(instance, tmp_path, text: str = ""):
    clear_cache()
    (tmp_path / "hc").write_text(
        "/^Subject: buy/ REJECT no spam\n/^Subject: scan/ FILTER other:x\n"
    )
    (tmp_path / "bc").write_text("/^click here/ FILTER body:y\n")
    return instance(text)


def test_content_filter_goes_into_the_envelope(instance, tmp_path):
    inst = make(instance, tmp_path, FILTER)
    out = inst.run(MSG)
    assert out.result.action == "queued" and not out.result.hold
    assert out.msg.attrs["filter"] == "scan:[127.0.0.1]:10025"


def test_no_content_filter_no_attribute(instance, tmp_path):
    inst = make(instance, tmp_path)
    assert "filter" not in inst.run(MSG).msg.attrs


def test_filter_action_in_a_header_overrides_content_filter(instance, tmp_path):
    inst = make(instance, tmp_path, FILTER + f"header_checks = regexp:{tmp_path}/hc\n")
    out = inst.run(b"Subject: scan me\r\n\r\nbody\r\n")
    assert out.msg.attrs["filter"] == "other:x"


def test_filter_action_in_the_body_overrides_content_filter(instance, tmp_path):
    inst = make(instance, tmp_path, FILTER + f"body_checks = regexp:{tmp_path}/bc\n")
    out = inst.run(b"Subject: hello\r\n\r\nclick here\r\n")
    # the envelope has content_filter; the body's FILTER comes later and wins (qmgr)
    assert out.msg.attrs["filter"] == "body:y"


def test_filter_from_smtpd_overrides_content_filter(instance, tmp_path):
    inst = make(instance, tmp_path, FILTER)
    attrs = {"client_address": "192.0.2.1", "protocol": "ESMTP", "filter": "access:z"}
    assert inst.run(MSG, attrs=attrs).msg.attrs["filter"] == "access:z"


def test_filter_action_applies_where_content_filter_is_empty(instance, tmp_path):
    """The reinjection smtpd (-o content_filter=) still honours a FILTER action."""
    inst = make(instance, tmp_path, f"header_checks = regexp:{tmp_path}/hc\n")
    assert inst.run(b"Subject: scan me\r\n\r\nb\r\n").msg.attrs["filter"] == "other:x"


def test_notices_are_not_filtered_by_default(instance, tmp_path):
    inst = make(instance, tmp_path, FILTER + f"header_checks = regexp:{tmp_path}/hc\n")
    for klass in ("bounce", "notify", True):
        out = inst.run(MSG, sender="", internal=klass)
        # neither the content filter nor the header checks (REJECT) touch it
        assert out.result.action == "queued", klass
        assert "filter" not in out.msg.attrs


def test_internal_mail_filter_classes_lets_a_class_be_inspected(instance, tmp_path):
    inst = make(
        instance,
        tmp_path,
        FILTER + f"header_checks = regexp:{tmp_path}/hc\ninternal_mail_filter_classes = bounce\n",
    )
    assert inst.run(MSG, sender="", internal="bounce").result.action == "rejected"
    out = inst.run(b"Subject: hello\r\n\r\nb\r\n", sender="", internal="bounce")
    assert out.msg.attrs["filter"] == "scan:[127.0.0.1]:10025"
    out = inst.run(b"Subject: hello\r\n\r\nb\r\n", sender="", internal="notify")
    assert "filter" not in out.msg.attrs


def test_no_header_body_checks_turns_the_checks_off(instance, tmp_path):
    text = f"header_checks = regexp:{tmp_path}/hc\nbody_checks = regexp:{tmp_path}/bc\n"
    inst = make(instance, tmp_path, text)
    assert inst.run(MSG).result.action == "rejected"
    inst = make(instance, tmp_path, text + "receive_override_options = no_header_body_checks\n")
    out = inst.run(MSG)
    assert out.result.action == "queued"
    assert "filter" not in out.msg.attrs  # the body FILTER did not run either


def test_no_address_mappings_turns_the_maps_off(instance, tmp_path):
    text = (
        "virtual_alias_maps = inline:{rcpt@example.net=alias@example.com}\n"
        "sender_canonical_maps = inline:{sender@example.org=canon@example.org}\n"
        "always_bcc = copy@example.com\n"
    )
    inst = make(instance, tmp_path, text)
    out = inst.run(MSG)
    assert out.msg.sender == "canon@example.org"
    assert sorted(r.address for r in out.msg.recipients) == [
        "alias@example.com",
        "copy@example.com",
    ]
    inst = make(instance, tmp_path, text + "receive_override_options = no_address_mappings\n")
    out = inst.run(MSG)
    assert out.msg.sender == "sender@example.org"
    assert [r.address for r in out.msg.recipients] == ["rcpt@example.net"]


def test_unknown_receive_override_option_is_warned_and_ignored(instance, tmp_path):
    inst = make(
        instance,
        tmp_path,
        f"header_checks = regexp:{tmp_path}/hc\n"
        "receive_override_options = no_such_thing, no_milters\n",
    )
    assert inst.run(MSG).result.action == "rejected"  # checks stay on
    assert "warning: receive_override_options: unknown option no_such_thing ignored" in (
        inst.maillog()
    )
