"""smtpreply kernel: reference against compiled, on EHLO replies and pipelined RCPT replies."""

import pytest

from mta.smtp import reply

EHLO = (
    b"250-mx.example.org\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-ETRN\r\n"
    b"250-STARTTLS\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n"
    b"250 SMTPUTF8\r\n"
)
RCPT_REPLIES = b"250 2.1.0 Ok\r\n" + b"250 2.1.5 Ok\r\n" * 1000 + b"354 End data with .\r\n"
IMPLS = {"ref": reply.ReplyParser_ref, "c": reply.ReplyParser_c}


@pytest.mark.benchmark(group="ReplyParser: 1000 pipelined RCPT replies")
@pytest.mark.parametrize("impl", [name for name, cls in IMPLS.items() if cls])
def test_pipelined_rcpt_replies(benchmark, impl):
    def run():
        return IMPLS[impl]().feed(RCPT_REPLIES)

    assert len(benchmark(run)) == 1002


@pytest.mark.benchmark(group="ReplyParser: EHLO reply in 16-byte reads")
@pytest.mark.parametrize("impl", [name for name, cls in IMPLS.items() if cls])
def test_ehlo_chunked(benchmark, impl):
    chunks = [EHLO[i : i + 16] for i in range(0, len(EHLO), 16)]

    def run():
        p = IMPLS[impl]()
        out = []
        for c in chunks:
            out += p.feed(c)
        return out

    assert len(benchmark(run)[0][2]) == 9
