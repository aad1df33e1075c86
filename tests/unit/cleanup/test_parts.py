"""cleanup's helpers on their own: address mapping, MIME structure, header builders."""

import time

import pytest

from mta.cleanup.addresses import AddressMapper, ExpansionError
from mta.cleanup.headers import (
    from_header,
    mail_date,
    message_id_header,
    received_header,
    rewrite_address_header,
)
from mta.cleanup.mime import (
    BOUNDARY_CLOSE,
    BOUNDARY_NONE,
    BOUNDARY_PART,
    MimeStack,
    is_mime_header,
    parse_content_type,
)
from mta.config import load_config


@pytest.fixture
def make_cfg(tmp_path):
    n = [0]

    def make(extra=""):
        n[0] += 1
        d = tmp_path / f"c{n[0]}"
        d.mkdir()
        (d / "main.cf").write_text(
            "myhostname = mx.example.com\nmydomain = example.com\n"
            "inet_interfaces = loopback-only\n" + extra
        )
        return load_config(str(d))

    return make


# ---- addresses


def test_canonical_at_domain_result_keeps_local_part(make_cfg):
    am = AddressMapper(make_cfg("canonical_maps = inline:{ @old.example=@new.example }\n"))
    assert am.recipient("joe@old.example") == "joe@new.example"


def test_canonical_propagates_unmatched_extension(make_cfg):
    cfg = make_cfg(
        "recipient_delimiter = +\ncanonical_maps = inline:{ joe@example.com=jo@example.org }\n"
    )
    assert AddressMapper(cfg).recipient("joe+tag@example.com") == "jo+tag@example.org"


def test_canonical_extension_not_propagated_when_off(make_cfg):
    cfg = make_cfg(
        "recipient_delimiter = +\npropagate_unmatched_extensions = virtual\n"
        "canonical_maps = inline:{ joe@example.com=jo@example.org }\n"
    )
    assert AddressMapper(cfg).recipient("joe+tag@example.com") == "jo@example.org"


def test_canonical_result_is_rewritten(make_cfg):
    am = AddressMapper(make_cfg("canonical_maps = inline:{ joe@mx.example.com=jdoe }\n"))
    assert am.sender("joe") == "jdoe@mx.example.com"


def test_masquerade_first_match_wins(make_cfg):
    am = AddressMapper(make_cfg("masquerade_domains = a.example.com, example.com\n"))
    assert am.sender("u@x.a.example.com") == "u@a.example.com"
    assert am.sender("u@x.b.example.com") == "u@example.com"
    assert am.sender("u@example.com") == "u@example.com"


def test_masquerade_classes(make_cfg):
    am = AddressMapper(
        make_cfg("masquerade_domains = example.com\nmasquerade_classes = envelope_recipient\n")
    )
    assert am.sender("u@h.example.com") == "u@h.example.com"
    assert am.recipient("u@h.example.com") == "u@example.com"


def test_virtual_extension_propagation(make_cfg):
    cfg = make_cfg(
        "recipient_delimiter = +\nvirtual_alias_maps = inline:{ joe@example.com=j@example.org }\n"
    )
    assert AddressMapper(cfg).expand_virtual("joe+x@example.com") == ["j+x@example.org"]


def test_virtual_without_tables_is_identity(make_cfg):
    assert AddressMapper(make_cfg()).expand_virtual("a@b") == ["a@b"]


def test_virtual_loop_raises(make_cfg):
    cfg = make_cfg("virtual_alias_maps = inline:{ a@x=b@x, b@x=a@x }\n")
    with pytest.raises(ExpansionError):
        AddressMapper(cfg).expand_virtual("a@x")


def test_always_bcc_rewritten(make_cfg):
    assert AddressMapper(make_cfg("always_bcc = audit\n")).always_bcc == "audit@mx.example.com"


# ---- MIME


@pytest.mark.parametrize(
    "value, expected",
    [
        (b'multipart/mixed; boundary="a b"', ("multipart/mixed", b"a b")),
        (b"Multipart/Alternative;\n\tBoundary=xyz", ("multipart/alternative", b"xyz")),
        (b"text/plain (comment; boundary=no)", ("text/plain", None)),
        (b"message/rfc822", ("message/rfc822", None)),
        (b"garbage", ("", None)),
        (b"", ("", None)),
    ],
)
def test_parse_content_type(value, expected):
    assert parse_content_type(value) == expected


def test_is_mime_header():
    assert is_mime_header(b"content-type") and is_mime_header(b"mime-version")
    assert not is_mime_header(b"subject")


def test_mime_stack_boundaries():
    s = MimeStack()
    s.push(b"outer")
    s.push(b"inner")
    assert s.boundary(b"--inner") == BOUNDARY_PART
    assert s.boundary(b"--outer  ") == BOUNDARY_PART
    assert s.levels == [b"outer"]
    assert s.boundary(b"--outerx") == BOUNDARY_NONE
    assert s.boundary(b"--outer--") == BOUNDARY_CLOSE
    assert s.levels == []
    assert s.boundary(b"--outer") == BOUNDARY_NONE


def test_mime_stack_nesting_limit():
    s = MimeStack(nesting_limit=1)
    assert s.push(b"a") and not s.push(b"b") and s.overflow


# ---- header builders


def test_mail_date_form():
    text = mail_date(0)
    day, rest = text.split(", ", 1)
    assert day in ("Thu", "Wed", "Fri")
    assert time.strptime(rest.rsplit(" (", 1)[0], "%d %b %Y %H:%M:%S %z")
    assert text.endswith(")")


def test_received_header_with_for():
    attrs = {
        "client_name": "c.example",
        "client_address": "192.0.2.1",
        "helo_name": "h",
        "protocol": "ESMTPSA",
    }
    text = received_header(attrs, "QID", "mx.example", "mta", "r@x", 0)
    lines = text.split("\n")
    assert lines[0] == "Received: from h (c.example [192.0.2.1])"
    assert lines[1] == "\tby mx.example (mta) with ESMTPSA id QID"
    assert lines[2].startswith("\tfor <r@x>; ")


def test_received_header_without_helo_uses_name():
    attrs = {"client_address": "192.0.2.1", "protocol": "SMTP"}
    text = received_header(attrs, "QID", "mx", "mta", None, 0)
    assert text.startswith(
        "Received: from unknown (unknown [192.0.2.1])\n\tby mx (mta) with SMTP id QID; "
    )


def test_message_id_header():
    assert (
        message_id_header("QID", "mx.example", 0) == "Message-Id: <19700101000000.QID@mx.example>"
    )
    assert message_id_header("QID", "mx", 0, resent=True).startswith("Resent-Message-Id: <")


def test_from_header_forms():
    assert from_header("a@x", "", "standard") == "From: a@x"
    assert from_header("a@x", "Ann Example", "standard") == "From: Ann Example <a@x>"
    assert from_header("a@x", "Ann, Example", "standard") == 'From: "Ann, Example" <a@x>'
    assert from_header("a@x", "Ann", "obsolete") == "From: a@x (Ann)"
    assert from_header("a@x", "", "standard", resent=True) == "Resent-From: a@x"


def test_rewrite_address_header_keeps_names_and_comments():
    raw = b'To: "Ann A" <ann>, bob (Bob B),\n\tgroup: carol;'
    out = rewrite_address_header(raw, lambda a: a + "@x.example")
    assert out == b'To: "Ann A" <ann@x.example>, bob@x.example (Bob B),\n\tgroup: carol@x.example;'


def test_rewrite_address_header_unchanged_is_same_object():
    raw = b"To: a@b"
    assert rewrite_address_header(raw, lambda a: a) is raw


def test_rewrite_address_header_token_limit():
    out = rewrite_address_header(b"To: a, b, c", lambda a: a.upper(), token_limit=2)
    assert out == b"To: A, B, c"
