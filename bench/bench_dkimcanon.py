"""dkimcanon: reference vs compiled DKIM body canonicalization; whole-message signing vs dkimpy."""

import pytest

from mta.common import dkim_canon as K
from mta.common.dkim import DkimKey, Signer, generate_key, private_pem

# a 100 KB body of 75-byte lines with runs of white space and trailing blanks
LINE = b"Lorem  ipsum\tdolor sit amet,   consectetur adipiscing elit, sed do eiusmod  "
LINES = [LINE] * 1300 + [b"", b""]
CANONS = {"ref": K.BodyCanon_ref, "c": K.BodyCanon_c}


@pytest.mark.benchmark(group="BodyCanon relaxed: 100 KB body, 1,300 lines")
@pytest.mark.parametrize("impl", [n for n, cls in CANONS.items() if cls])
def test_body_relaxed(benchmark, impl):
    cls = CANONS[impl]

    def run():
        canon = cls(True)
        out = [canon.line(line) for line in LINES]
        out.append(canon.finish())
        return out

    benchmark(run)


HEADERS = [
    b"From: Sender <sender@example.net>",
    b"To: user@example.org",
    b"Subject: a subject line that is long enough to be realistic",
    b"Date: Sat, 28 Nov 2026 12:00:00 +0000",
    b"Message-ID: <abc123@example.net>",
    b"MIME-Version: 1.0",
    b"Content-Type: text/plain; charset=utf-8",
]
BODY_4K = b"".join([LINE + b"\r\n"] * 52)


@pytest.mark.benchmark(group="sign a 4 KB message, rsa-2048")
@pytest.mark.parametrize("impl", ["mta", "dkimpy"])
def test_sign_rsa_4k(benchmark, impl):
    key = generate_key("rsa", 2048)
    if impl == "mta":
        dk = DkimKey("example.net", "s1", "rsa-sha256", key)

        def run():
            signer = Signer([dk])
            signer.body_text(BODY_4K)
            return signer.sign(HEADERS)

    else:
        dkim = pytest.importorskip("dkim")
        pem = private_pem(key)
        message = b"\r\n".join(HEADERS) + b"\r\n\r\n" + BODY_4K
        names = [b"from", b"to", b"subject", b"date", b"message-id", b"mime-version"]

        def run():
            return dkim.sign(message, b"s1", b"example.net", pem, include_headers=names)

    benchmark(run)
