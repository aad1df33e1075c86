"""mta cat (postcat) on real queue files."""

import pytest

from mta.cli import cat
from mta.queue.queue_file import QueueFileWriter, Recipient, mark_done, read_queue_file

CONTENT = b"Subject: greetings\r\nFrom: a@example.org\r\n\r\nfirst body line\r\nsecond\r\n"


@pytest.fixture
def instance(tmp_path):
    q = tmp_path / "spool"
    for name in ("incoming", "active", "deferred", "hold", "maildrop"):
        (q / name).mkdir(parents=True)
    (tmp_path / "main.cf").write_text(f"queue_directory = {q}\n")
    w = QueueFileWriter(str(q), "deferred")
    w.write_envelope(
        "a@example.org",
        [Recipient("b@example.net"), Recipient("c@example.net")],
        {"client_name": "localhost"},
    )
    w.write_content(CONTENT)
    qid = w.commit()
    return tmp_path, qid, w.path


def run(capsys, *argv):
    rc = cat.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_whole_file_has_all_sections_in_order(instance, capsys):
    _, qid, path = instance
    rc, out, err = run(capsys, path)
    assert (rc, err) == (0, "")
    banners = [line for line in out.splitlines() if line.startswith("***")]
    assert banners == [
        f"*** {what} {path} ***"
        for what in ("ENVELOPE RECORDS", "MESSAGE CONTENTS", "HEADER EXTRACTED", "MESSAGE FILE END")
    ]
    assert "sender: a@example.org" in out
    assert "recipient: b@example.net" in out
    assert "named_attribute: client_name=localhost" in out
    assert "Subject: greetings\nFrom: a@example.org\n\nfirst body line\nsecond\n" in out


def test_headers_only_and_body_only(instance, capsys):
    _, _, path = instance
    assert run(capsys, "-h", path)[1] == "Subject: greetings\nFrom: a@example.org\n"
    assert run(capsys, "-b", path)[1] == "first body line\nsecond\n"


def test_envelope_only_shows_done_recipients(instance, capsys):
    _, _, path = instance
    mark_done(path, [read_queue_file(path).recipients[0].offset])
    out = run(capsys, "-e", path)[1]
    assert "done_recipient: b@example.net" in out and "recipient: c@example.net" in out
    assert "Subject" not in out


def test_q_finds_the_file_by_queue_id(instance, capsys):
    cdir, qid, _ = instance
    rc, out, _ = run(capsys, "-c", str(cdir), "-q", qid)
    assert rc == 0
    assert out.startswith(f"*** ENVELOPE RECORDS deferred/{qid} ***\n")


def test_q_unknown_id_warns_and_fails(instance, capsys):
    cdir, _, _ = instance
    rc, _, err = run(capsys, "-c", str(cdir), "-q", "5BRdsX0QmDzJ9MV", "../../etc/passwd")
    assert rc == 1
    assert err.count("no such queue file") == 2


def test_offsets_prefix_records(instance, capsys):
    _, _, path = instance
    out = run(capsys, "-o", "-e", path)[1]
    offset, label = out.splitlines()[1].split(None, 1)
    assert int(offset) == 0 and label.startswith("message_size:")


def test_truncated_file_prints_what_it_can_and_fails(instance, capsys, tmp_path):
    _, _, path = instance
    data = open(path, "rb").read()
    broken = tmp_path / "broken"
    broken.write_bytes(data[:-20])
    rc, out, err = run(capsys, str(broken))
    assert rc == 1
    assert "sender: a@example.org" in out
    assert err.startswith(f"mta cat: warning: {broken}: truncated")
