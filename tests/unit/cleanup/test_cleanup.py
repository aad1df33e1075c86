"""The cleanup library end to end: real queue files in tmp_path, read back and parsed."""

import os
import re

import pytest

from mta.queue import rec_type as R
from tests.unit.cleanup.conftest import LOCAL_SMTP, REMOTE

SIMPLE = b"Subject: hello\r\nFrom: Ann <ann@example.org>\r\nTo: bob@example.net\r\n\r\nHi.\r\n"


# ---- queueing and the envelope


def test_message_is_queued_with_envelope(instance):
    inst = instance()
    out = inst.run(SIMPLE)
    assert out.result.action == "queued" and out.result.nrcpt == 1
    assert out.msg.sender == "sender@example.org"
    assert [r.address for r in out.msg.recipients] == ["rcpt@example.net"]
    assert out.msg.attrs["client_address"] == "192.0.2.1"
    assert out.msg.attrs["protocol"] == "ESMTP"
    assert out.email["Subject"] == "hello"
    assert out.email.get_payload() == "Hi.\n"


def test_received_header_first_in_postfix_form(instance):
    out = instance().run(SIMPLE)
    qid = out.result.queue_id
    first = out.header_lines()[:3]
    assert first[0] == b"Received: from helo.example (client.example [192.0.2.1])"
    assert first[1] == f"\tby mx.test.example (mta) with ESMTP id {qid}".encode()
    assert re.fullmatch(
        rb"\tfor <rcpt@example.net>; \w{3}, [ \d]\d \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4} \(\w+\)",
        first[2],
    )


def test_received_without_for_when_several_recipients(instance):
    out = instance().run(SIMPLE, rcpts=("a@example.net", "b@example.net"))
    received = out.email["Received"]
    assert "for <" not in received and out.result.nrcpt == 2


def test_received_ipv6_client(instance):
    attrs = dict(REMOTE, client_address="2001:db8::1")
    out = instance().run(SIMPLE, attrs=attrs)
    assert out.header_lines()[0].endswith(b"(client.example [IPv6:2001:db8::1])")


def test_received_for_local_submission(instance):
    out = instance().run(SIMPLE, attrs={"protocol": "local", "uid": "1000"}, local_submit=True)
    first = out.header_lines()[:2]
    assert first[0] == b"Received: by mx.test.example (mta, from userid 1000)"
    assert first[1].startswith(f"\tid {out.result.queue_id}; ".encode())


def test_original_recipient_kept(instance):
    out = instance().run(SIMPLE, rcpts=[("rcpt", "Rcpt", 2, "rfc822;x@y")])
    (r,) = out.msg.recipients
    assert (r.address, r.orig, r.notify, r.dsn_orcpt) == (
        "rcpt@mx.test.example",
        "Rcpt",
        2,
        "rfc822;x@y",
    )


def test_sender_and_recipient_rewritten_to_standard_form(instance):
    out = instance().run(SIMPLE, sender="joe", rcpts=("bob", "site!carol"))
    assert out.msg.sender == "joe@mx.test.example"
    assert [r.address for r in out.msg.recipients] == ["bob@mx.test.example", "carol@site"]


def test_null_sender_stays_null(instance):
    out = instance().run(SIMPLE, sender="")
    assert out.msg.sender == ""


def test_duplicate_recipients_removed(instance):
    out = instance().run(SIMPLE, rcpts=("a@example.net", "a@example.net", "b@example.net"))
    assert [r.address for r in out.msg.recipients] == ["a@example.net", "b@example.net"]


def test_no_recipients_rejected(instance):
    inst = instance()
    out = inst.run(SIMPLE, rcpts=())
    assert (out.result.action, out.result.reply) == ("rejected", "5.1.0 no recipients specified")
    assert inst.files() == []


def test_logs_message_id_and_queue_active(instance):
    inst = instance()
    out = inst.run(b"Message-ID: <abc@example.org>\r\n\r\nx\r\n")
    qid = out.result.queue_id
    log = inst.maillog()
    assert f"{qid}: message-id=<abc@example.org>" in log
    # qmgr, not cleanup, logs "(queue active)" when it takes the message
    assert "(queue active)" not in log


# ---- chunks, 8-bit, limits, failures


@pytest.mark.parametrize("cut", range(0, len(SIMPLE) + 1, 3))
def test_chunking_anywhere_gives_same_file_content(instance, cut):
    inst = instance()
    whole = inst.run(SIMPLE)
    part = inst.run(SIMPLE, chunks=[cut, min(cut + 1, len(SIMPLE))])

    def strip(data):
        return re.sub(rb"\S{15}(@mx|;| id)", b"QID\\1", data).replace(
            whole.result.queue_id.encode(), b"QID"
        )

    assert strip(part.content).split(b"\n")[3:] == strip(whole.content).split(b"\n")[3:]


def test_8bit_content_sets_flag(instance):
    inst = instance()
    assert inst.run(SIMPLE).msg.flags & R.QF_8BIT == 0
    assert inst.run(SIMPLE + "é\r\n".encode()).msg.flags & R.QF_8BIT


def test_flags_from_caller_kept(instance):
    out = instance().run(SIMPLE, flags=R.QF_SMTPUTF8)
    assert out.msg.flags & R.QF_SMTPUTF8


def test_message_size_limit(instance):
    inst = instance("message_size_limit = 100\n")
    out = inst.run(SIMPLE + b"x" * 200 + b"\r\n")
    assert (out.result.action, out.result.reply) == ("rejected", "5.3.4 message file too big")
    assert inst.files() == []


def test_hopcount_limit(instance):
    inst = instance("hopcount_limit = 2\n")
    out = inst.run(b"Received: a\r\nReceived: b\r\nDelivered-To: c\r\n\r\nx\r\n")
    assert out.result.action == "rejected" and "hops" in out.result.reply


def test_unusable_spool_defers_without_file(instance):
    inst = instance()
    incoming = inst.spool / "incoming"
    incoming.rmdir()
    incoming.write_text("not a directory")  # every create under it fails, even as root
    out = inst.run(SIMPLE)
    assert (out.result.action, out.result.reply) == ("deferred", "4.3.0 queue file write error")
    assert "queue file write error" in inst.maillog()


def test_unwritable_spool_defers(instance):
    inst = instance()
    incoming = inst.spool / "incoming"
    os.chmod(incoming, 0o500)
    try:
        if os.access(incoming, os.W_OK):
            pytest.skip("running as root: permissions do not stop us")
        out = inst.run(SIMPLE)
    finally:
        os.chmod(incoming, 0o700)
    assert (out.result.action, out.result.reply) == ("deferred", "4.3.0 queue file write error")
    assert inst.files() == []


def test_abort_leaves_nothing(instance):
    inst = instance()
    job = inst.cleanup.open("a@x.org", REMOTE)
    job.add_recipient("b@y.org")
    job.write(SIMPLE)
    job.abort()
    assert [p for p in inst.all_files() if "incoming" in p] == []


def test_close_into_hold(instance):
    inst = instance()
    out = inst.run(SIMPLE, queue="hold")
    assert out.result.hold and inst.files("hold") and not inst.files("incoming")


def test_headers_only_message(instance):
    out = instance().run(b"Subject: only headers")
    assert out.email["Subject"] == "only headers"


def test_non_header_line_starts_body(instance):
    out = instance().run(b"Subject: x\r\nthis is body\r\n")
    assert out.email["Subject"] == "x"
    assert out.email.get_payload() == "this is body\n"


def test_header_size_limit_truncates(instance):
    inst = instance("header_size_limit = 40\n")
    out = inst.run(b"X-Long: " + b"a" * 100 + b"\r\n\r\nbody\r\n")
    assert out.email["X-Long"] == "a" * 32


# ---- headers removed and added


def test_return_path_removed(instance):
    out = instance().run(b"Return-Path: <evil@example.org>\r\n" + SIMPLE)
    assert out.email["Return-Path"] is None


def test_missing_headers_not_added_for_remote_clients(instance):
    out = instance().run(b"Subject: x\r\n\r\nbody\r\n")
    e = out.email
    assert e["Message-Id"] is None and e["Date"] is None and e["From"] is None


def test_missing_headers_added_for_local_clients(instance):
    inst = instance()
    out = inst.run(b"Subject: x\r\n\r\nbody\r\n", attrs=LOCAL_SMTP)
    e = out.email
    qid = out.result.queue_id
    assert re.fullmatch(rf"<\d{{14}}\.{qid}@mx\.test\.example>", e["Message-Id"])
    assert e["Date"] and e["From"] == "sender@example.org"
    assert f"{qid}: message-id={e['Message-Id']}" in inst.maillog()


def test_always_add_missing_headers(instance):
    out = instance("always_add_missing_headers = yes\n").run(b"Subject: x\r\n\r\nbody\r\n")
    assert out.email["Message-Id"] and out.email["Date"] and out.email["From"]


def test_from_with_full_name_for_local_submission(instance):
    attrs = {"protocol": "local", "uid": "0", "full_name": "Joe Q. User"}
    out = instance().run(b"Subject: x\r\n\r\nb\r\n", sender="joe", attrs=attrs, local_submit=True)
    assert out.email["From"] == '"Joe Q. User" <joe@mx.test.example>'
    assert out.msg.full_name == "Joe Q. User"


def test_from_obsolete_format(instance):
    inst = instance("header_from_format = obsolete\n")
    attrs = {"protocol": "local", "full_name": "Joe User"}
    out = inst.run(b"Subject: x\r\n\r\nb\r\n", sender="joe", attrs=attrs, local_submit=True)
    assert out.email["From"] == "joe@mx.test.example (Joe User)"


def test_existing_headers_not_duplicated(instance):
    msg = b"From: a@b.example\r\nDate: Mon, 1 Jan 2001 00:00:00 +0000\r\nMessage-ID: <x@y>\r\n\r\n"
    out = instance().run(msg, attrs=LOCAL_SMTP)
    e = out.email
    assert e.get_all("Date") == ["Mon, 1 Jan 2001 00:00:00 +0000"]
    assert e.get_all("Message-Id") == ["<x@y>"] and len(e.get_all("From")) == 1


def test_undisclosed_recipients_header(instance):
    inst = instance("undisclosed_recipients_header = To: undisclosed-recipients:;\n")
    out = inst.run(b"Subject: x\r\n\r\nb\r\n", attrs=LOCAL_SMTP)
    assert out.email["To"] == "undisclosed-recipients:;"
    out = inst.run(b"Cc: a@b.example\r\n\r\nb\r\n", attrs=LOCAL_SMTP)
    assert out.email["To"] is None


def test_resent_headers_get_resent_versions(instance):
    msg = b"Resent-From: r@example.org\r\nFrom: a@example.org\r\n\r\nb\r\n"
    out = instance().run(msg, attrs=LOCAL_SMTP)
    e = out.email
    assert e["Resent-Message-Id"] and e["Resent-Date"]
    assert e["Message-Id"] is None and e["Date"] is None


def test_bcc_removed_for_local_submission_only(instance):
    inst = instance()
    msg = b"To: a@example.org\r\nBcc: secret@example.org\r\n\r\nb\r\n"
    local = inst.run(msg, attrs={"protocol": "local"}, local_submit=True)
    assert local.email["Bcc"] is None
    remote = inst.run(msg)
    assert remote.email["Bcc"] == "secret@example.org"


# ---- header address rewriting


def test_header_addresses_rewritten_for_local_clients(instance):
    msg = b'To: bob, "Carol C" <carol>\r\nCc: site!dave\r\n\r\nb\r\n'
    out = instance().run(msg, attrs=LOCAL_SMTP)
    assert out.email["To"] == 'bob@mx.test.example, "Carol C" <carol@mx.test.example>'
    assert out.email["Cc"] == "dave@site"


def test_header_addresses_left_alone_for_remote_clients(instance):
    out = instance().run(b"To: bob\r\n\r\nb\r\n")
    assert out.email["To"] == "bob"


def test_remote_header_rewrite_domain(instance):
    out = instance("remote_header_rewrite_domain = domain.invalid\n").run(b"To: bob\r\n\r\nb\r\n")
    assert out.email["To"] == "bob@domain.invalid"


def test_local_header_rewrite_clients_static_all(instance):
    out = instance("local_header_rewrite_clients = static:all\n").run(b"To: bob\r\n\r\nb\r\n")
    assert out.email["To"] == "bob@mx.test.example"


def test_local_header_rewrite_clients_mynetworks(instance):
    inst = instance("local_header_rewrite_clients = permit_mynetworks\nmynetworks = 192.0.2.0/24\n")
    assert inst.run(b"To: bob\r\n\r\nb\r\n").email["To"] == "bob@mx.test.example"


def test_sasl_client_is_local(instance):
    inst = instance("local_header_rewrite_clients = permit_sasl_authenticated\n")
    out = inst.run(b"To: bob\r\n\r\nb\r\n", attrs=dict(REMOTE, sasl_username="joe"))
    assert out.email["To"] == "bob@mx.test.example"


def test_folded_address_header_keeps_folding(instance):
    msg = b"To: Ann <ann>,\r\n Bob <bob>\r\n\r\nb\r\n"
    out = instance().run(msg, attrs=LOCAL_SMTP)
    assert b"To: Ann <ann@mx.test.example>,\n Bob <bob@mx.test.example>" in out.content


# ---- canonical, masquerade, virtual, bcc


def _table(inst_tmp, name, text):
    path = inst_tmp / name
    path.write_text(text)
    return f"texthash:{path}"


def test_canonical_maps_envelope_and_headers(instance, tmp_path):
    spec = _table(
        tmp_path, "canon", "joe@mx.test.example joe.user@example.com\n@old.example @new.example\n"
    )
    inst = instance(f"canonical_maps = {spec}\n")
    out = inst.run(
        b"From: joe\r\nTo: x@old.example\r\n\r\nb\r\n",
        sender="joe",
        rcpts=("y@old.example",),
        attrs=LOCAL_SMTP,
    )
    assert out.msg.sender == "joe.user@example.com"
    assert [r.address for r in out.msg.recipients] == ["y@new.example"]
    assert out.email["From"] == "joe.user@example.com"
    assert out.email["To"] == "x@new.example"


def test_sender_canonical_classes(instance, tmp_path):
    spec = _table(tmp_path, "scanon", "joe@mx.test.example joe.user@example.com\n")
    inst = instance(f"sender_canonical_maps = {spec}\nsender_canonical_classes = envelope_sender\n")
    out = inst.run(b"From: joe\r\n\r\nb\r\n", sender="joe", attrs=LOCAL_SMTP)
    assert out.msg.sender == "joe.user@example.com"
    assert out.email["From"] == "joe@mx.test.example"


def test_recipient_canonical_before_canonical(instance, tmp_path):
    rspec = _table(tmp_path, "rcanon", "a@example.net b@example.net\n")
    cspec = _table(tmp_path, "canon", "b@example.net c@example.net\n")
    inst = instance(f"recipient_canonical_maps = {rspec}\ncanonical_maps = {cspec}\n")
    out = inst.run(SIMPLE, rcpts=("a@example.net",))
    assert [r.address for r in out.msg.recipients] == ["c@example.net"]


def test_masquerade_domains(instance):
    inst = instance(
        "masquerade_domains = !keep.example.com, example.com\nmasquerade_exceptions = root\n"
    )
    out = inst.run(
        b"From: ann@host.example.com\r\n\r\nb\r\n", sender="joe@host.example.com", attrs=LOCAL_SMTP
    )
    assert out.msg.sender == "joe@example.com"
    assert out.email["From"] == "ann@example.com"
    assert inst.run(SIMPLE, sender="joe@keep.example.com").msg.sender == "joe@keep.example.com"
    assert inst.run(SIMPLE, sender="root@host.example.com").msg.sender == "root@host.example.com"


def test_masquerade_not_for_envelope_recipients_by_default(instance):
    inst = instance("masquerade_domains = example.com\n")
    out = inst.run(SIMPLE, rcpts=("u@host.example.com",))
    assert out.msg.recipients[0].address == "u@host.example.com"


VIRTUAL = """
list@example.com      a@example.org, team@example.com
team@example.com      b@example.org, c@example.org
self@example.com      self@example.com, copy@example.org
loop1@example.com     loop2@example.com
loop2@example.com     loop1@example.com
"""


def test_virtual_alias_expansion_recursive(instance, tmp_path):
    inst = instance(f"virtual_alias_maps = {_table(tmp_path, 'virtual', VIRTUAL)}\n")
    out = inst.run(SIMPLE, rcpts=("list@example.com",))
    assert [r.address for r in out.msg.recipients] == [
        "a@example.org",
        "b@example.org",
        "c@example.org",
    ]
    assert all(r.orig == "list@example.com" for r in out.msg.recipients)


def test_virtual_alias_self_reference_keeps_address(instance, tmp_path):
    inst = instance(f"virtual_alias_maps = {_table(tmp_path, 'virtual', VIRTUAL)}\n")
    out = inst.run(SIMPLE, rcpts=("self@example.com",))
    assert [r.address for r in out.msg.recipients] == ["self@example.com", "copy@example.org"]


def test_virtual_alias_loop_defers(instance, tmp_path):
    inst = instance(
        f"virtual_alias_maps = {_table(tmp_path, 'virtual', VIRTUAL)}\n"
        "virtual_alias_recursion_limit = 5\n"
    )
    out = inst.run(SIMPLE, rcpts=("loop1@example.com",))
    assert (out.result.action, out.result.reply) == ("deferred", "4.6.0 Alias expansion error")
    assert "map nesting" in inst.maillog() and inst.files() == []


def test_virtual_alias_expansion_limit_defers(instance, tmp_path):
    inst = instance(
        f"virtual_alias_maps = {_table(tmp_path, 'virtual', VIRTUAL)}\n"
        "virtual_alias_expansion_limit = 2\n"
    )
    out = inst.run(SIMPLE, rcpts=("list@example.com",))
    assert out.result.action == "deferred"
    assert "expansion size" in inst.maillog()


def test_virtual_alias_dedup_after_expansion(instance, tmp_path):
    inst = instance(f"virtual_alias_maps = {_table(tmp_path, 'virtual', VIRTUAL)}\n")
    out = inst.run(SIMPLE, rcpts=("team@example.com", "b@example.org"))
    addrs = [r.address for r in out.msg.recipients]
    assert addrs.count("b@example.org") == 2  # different original recipients
    inst2 = instance(
        f"virtual_alias_maps = {_table(tmp_path, 'virtual2', VIRTUAL)}\n"
        "enable_original_recipient = no\n"
    )
    out = inst2.run(SIMPLE, rcpts=("team@example.com", "b@example.org"))
    assert [r.address for r in out.msg.recipients] == ["b@example.org", "c@example.org"]


def test_always_bcc_and_bcc_maps(instance, tmp_path):
    sbcc = _table(tmp_path, "sbcc", "sender@example.org sarchive@example.org\n")
    rbcc = _table(tmp_path, "rbcc", "rcpt@example.net rarchive@example.org\n")
    inst = instance(
        f"always_bcc = audit@example.org\nsender_bcc_maps = {sbcc}\nrecipient_bcc_maps = {rbcc}\n"
    )
    out = inst.run(SIMPLE)
    got = {r.address: r.notify for r in out.msg.recipients}
    assert got == {
        "rcpt@example.net": 0,
        "rarchive@example.org": R.DSN_NOTIFY_NEVER,
        "sarchive@example.org": R.DSN_NOTIFY_NEVER,
        "audit@example.org": R.DSN_NOTIFY_NEVER,
    }


def test_mail_date_of_each_second_is_its_own_even_when_remembered():
    import time as _time

    from mta.cleanup.headers import _format_date, mail_date

    t = 1_800_000_000
    first = mail_date(t + 0.2)
    assert mail_date(t + 0.9) == first == _format_date(t)
    assert mail_date(t + 1.0) == _format_date(t + 1) != first
    assert mail_date(t) == first  # going back a second is not served the later one
    assert _time.strftime("%d %b %Y %H:%M:%S", _time.localtime(t)).lstrip("0") in first
