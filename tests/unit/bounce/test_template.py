"""bounce_template_file: Postfix's bounce(5) template format, and notices made from it."""

from email import message_from_bytes

import pytest

from mta.bounce.notice import make_notice
from mta.bounce.template import TemplateError, load_templates
from mta.common.dsn import ACTION_FAILED, RecipientStatus
from mta.config import load_config
from tests.support.agent import queue_message
from tests.support.instance import make_instance

TEMPLATES = """\
# comments and blank lines outside a template are ignored

failure_template = <<EOF
Charset: utf-8
from: Bounces <bounces@example.net>
SUBJECT: Your mail could not be delivered
Postmaster-Subject: PM copy: undeliverable mail

Hello from $myhostname \u2014 caf\u00e9.
Mail is kept for ${maximal_queue_lifetime_days} days, price $$5.
EOF

delay_template = <<END
Subject: Still trying
END
"""


def cfg_with(tmp_path, text=TEMPLATES):
    path = tmp_path / "bounce.cf"
    path.write_text(text, encoding="utf-8")
    cdir = make_instance(tmp_path, f"bounce_template_file = {path}\nmyhostname = mx.test.example\n")
    return load_config(str(cdir)), str(path)


def test_parse_headers_any_case_and_expand_text(tmp_path):
    cfg, path = cfg_with(tmp_path)
    t = load_templates(path, cfg)
    f = t["failure_template"]
    assert (f.charset, f.sender, f.subject, f.postmaster_subject) == (
        "utf-8",
        "Bounces <bounces@example.net>",
        "Your mail could not be delivered",
        "PM copy: undeliverable mail",
    )
    assert f.text(cfg) == (
        "Hello from mx.test.example \u2014 caf\u00e9.\nMail is kept for 5 days, price $5."
    )
    assert t["delay_template"].subject == "Still trying" and t["delay_template"].body == ""
    assert "success_template" not in t


END = "EOF"

BAD = [
    (f"failure_template = <<{END}\nSubject: x\n\nbody\n", 'no closing "EOF"'),
    (f"bogus_template = <<{END}\n{END}\n", "unknown template bogus_template"),
    ("failure_template\n", 'expected "NAME = <<EOF"'),
    (f"failure_template = <<{END}\nX-Header: y\n\nbody\n{END}\n", "unknown header line"),
    (f"failure_template = <<{END}\nSubject: x\n\ncaf\u00e9\n{END}\n", "needs a Charset"),
    (f"failure_template = <<{END}\nSubject: x\n\n$no_such_param\n{END}\n", "$no_such_param"),
]


@pytest.mark.parametrize(("text", "why"), BAD)
def test_bad_template_files_name_file_and_line(tmp_path, text, why):
    cfg, path = cfg_with(tmp_path, text)
    with pytest.raises(TemplateError) as info:
        load_templates(path, cfg)
    assert str(info.value).startswith(path) and why in str(info.value)


def failed_notice(cfg, **kw):
    m = queue_message(cfg, ["u@gone.example"], sender="writer@origin.example", queue="active")
    st = RecipientStatus.of(m.recipients[0], ACTION_FAILED, "5.1.2", "550 5.1.2 domain gone")
    _, rcpts, data = make_notice(cfg, m, m.path, [st], **kw)
    return rcpts, message_from_bytes(data)


def test_notice_uses_the_template(tmp_path):
    cfg, _ = cfg_with(tmp_path)
    rcpts, notice = failed_notice(cfg)
    assert rcpts == ["writer@origin.example"]
    assert notice["Subject"] == "Your mail could not be delivered"
    assert notice["From"] == "Bounces <bounces@example.net>"
    letter = notice.get_payload()[0]
    assert letter.get_content_charset() == "utf-8"
    text = letter.get_payload(decode=True).decode("utf-8")
    assert text.startswith("Hello from mx.test.example \u2014 caf\u00e9.")
    assert "<u@gone.example>: 550 5.1.2 domain gone" in text


def test_postmaster_copy_has_its_subject_and_no_letter(tmp_path):
    cfg, _ = cfg_with(tmp_path)
    rcpts, notice = failed_notice(cfg, to="postmaster", headers_only=True)
    assert rcpts == ["postmaster"] and notice["Subject"] == "PM copy: undeliverable mail"
    text = notice.get_payload()[0].get_payload(decode=True).decode("utf-8")
    assert "Hello from" not in text and "<u@gone.example>" in text


def test_broken_template_file_falls_back_to_the_built_in_texts(tmp_path):
    cfg, _ = cfg_with(tmp_path, "failure_template = <<EOF\nno end\n")
    _, notice = failed_notice(cfg)
    assert notice["Subject"] == "Undelivered Mail Returned to Sender"
