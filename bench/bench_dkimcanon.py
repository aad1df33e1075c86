"""dkimcanon: reference vs compiled DKIM body canonicalization; signing a message vs dkimpy
(rsa-2048 and ed25519, 4 KB and 100 KB, relaxed/relaxed on both sides)."""

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


BODY_100K = b"".join([LINE + b"\r\n"] * 1300)
CASES = [
    (kind, size, body)
    for kind in ("rsa", "ed25519")
    for size, body in (("4k", BODY_4K), ("100k", BODY_100K))
]


def _dkimpy_secret(key, kind):
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    if kind == "ed25519":  # dkimpy takes an Ed25519 key as its base64 seed
        import base64

        return base64.b64encode(key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()))
    return private_pem(key)


@pytest.mark.parametrize("kind,size,body", CASES, ids=[f"{k}-{s}" for k, s, _ in CASES])
@pytest.mark.parametrize("impl", ["mta", "dkimpy"])
def test_sign(benchmark, impl, kind, size, body):
    benchmark.group = f"sign a message: {kind}, {size}"
    key = generate_key(kind, 2048)
    if impl == "mta":
        alg = "rsa-sha256" if kind == "rsa" else "ed25519-sha256"
        dk = DkimKey("example.net", "s1", alg, key)

        def run():
            signer = Signer([dk])
            signer.body_text(body)
            return signer.sign(HEADERS)

    else:
        dkim = pytest.importorskip("dkim")
        if kind == "ed25519":
            pytest.importorskip("nacl")
        secret = _dkimpy_secret(key, kind)
        message = b"\r\n".join(HEADERS) + b"\r\n\r\n" + body
        names = [b"from", b"to", b"subject", b"date", b"message-id", b"mime-version"]
        alg = b"rsa-sha256" if kind == "rsa" else b"ed25519-sha256"

        def run():
            return dkim.sign(
                message,
                b"s1",
                b"example.net",
                secret,
                include_headers=names,
                signature_algorithm=alg,
                canonicalize=(b"relaxed", b"relaxed"),
            )

    benchmark(run)
