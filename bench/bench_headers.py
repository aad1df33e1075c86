"""headers: reference vs compiled header splitter, and the stdlib header parser."""

import email.parser
import email.policy

import pytest

from mta.cleanup import header_parse as H

HEADERS = b"".join(
    [
        b"Received: from relay%d.example.net (relay%d.example.net [192.0.2.%d])\r\n"
        b"\tby mx.example.org (mta) with ESMTPS id ABCDEF%d\r\n"
        b"\tfor <user@example.org>; Sat, 28 Nov 2026 12:00:00 +0000 (UTC)\r\n" % (i, i, i, i)
        for i in range(10)
    ]
    + [
        b"From: Sender <sender@example.net>\r\n",
        b"To: user@example.org\r\n",
        b"Subject: a subject line that is long enough to be realistic\r\n",
        b"Date: Sat, 28 Nov 2026 12:00:00 +0000\r\n",
        b"Message-ID: <abc123@example.net>\r\n",
        b"MIME-Version: 1.0\r\n",
        b"Content-Type: text/plain; charset=utf-8\r\n",
        b"Content-Transfer-Encoding: 8bit\r\n",
    ]
    + [b"X-Header-%d: value %d\r\n" % (i, i) for i in range(20)]
    + [b"\r\n", b"body\r\n"]
)
PARSERS = {"ref": H.HeaderParser_ref, "c": H.HeaderParser_c}


@pytest.mark.benchmark(group="header section: 38 headers, 4 KB chunks")
@pytest.mark.parametrize("impl", [n for n, cls in PARSERS.items() if cls])
def test_split_headers(benchmark, impl):
    cls = PARSERS[impl]

    def run():
        p = cls(102400)
        out = p.feed(HEADERS)
        return out, p.done

    out, done = benchmark(run)
    assert done and len(out) == 38


@pytest.mark.benchmark(group="header section: 38 headers, 4 KB chunks")
def test_split_headers_stdlib(benchmark):
    parser = email.parser.BytesHeaderParser(policy=email.policy.compat32)
    msg = benchmark(parser.parsebytes, HEADERS)
    assert len(msg.items()) == 38


UNFOLD = {"ref": H.unfold_ref, "c": H.unfold_c}
FOLDED = b"Received: from a\n\tby b\n\tfor <c>; date" * 10


@pytest.mark.benchmark(group="unfold: 30-line header")
@pytest.mark.parametrize("impl", [n for n, fn in UNFOLD.items() if fn])
def test_unfold(benchmark, impl):
    assert b"\n" not in benchmark(UNFOLD[impl], FOLDED)
