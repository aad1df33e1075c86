"""Hypothesis strategies for queue files built record by record, damaged or not,
for the scan_envelope tests (diff and unit)."""

from __future__ import annotations

from hypothesis import strategies as st

from mta._speedups.record_ref import encode_record
from mta.queue import rec_type as R

ENVELOPE_TYPES = b"TAFSOonRDW"
EXTRA_TYPES = b"AOonRDW"
STRAY_TYPES = b"TAFSOonRDWNLXMCEZ"
PAYLOADS = [
    b"",
    b"1",
    b"12 34",
    b" 12  34 ",
    b"1700000000 999999",
    b"a=b",
    b"x@y.example",
    b"\xff\xfe=",
    "é@ü.example".encode(),
    b"007",
    b"1\t2",
    b"+1",
    b"-5",
    b"1234567890123456",
    b"123456789012345",
    b"1_0",
]

payload = st.one_of(st.sampled_from(PAYLOADS), st.binary(max_size=8))
WELL_FORMED = {  # payloads the writer would give each record type
    R.REC_TYPE_TIME: st.sampled_from([b"1700000000 250000", b"0 999999", b"123456789012345 7"]),
    R.REC_TYPE_DSN_NOTIFY: st.sampled_from([b"0", b"14", b"8"]),
    R.REC_TYPE_WARN: st.sampled_from([b"", b"     1700003600", b"              0"]),
    R.REC_TYPE_ATTR: st.sampled_from([b"protocol=ESMTP", b"=", b"\xff=\xfe"]),
}


@st.composite
def typed_record(draw, types: bytes) -> tuple[int, bytes]:
    """A record of one of types, its payload mostly well formed."""
    rtype = draw(st.sampled_from(list(types)))
    if rtype in WELL_FORMED and draw(st.integers(0, 4)):
        return rtype, draw(WELL_FORMED[rtype])
    return rtype, draw(payload)


def record_list(types: bytes, max_size: int) -> st.SearchStrategy:
    return st.lists(typed_record(types), max_size=max_size)


def encode_all(records) -> bytes:
    return b"".join(encode_record(t, p) for t, p in records)


@st.composite
def queue_files(draw) -> bytes:
    """A queue file as the writer makes it, often bent: stray records, a wrong
    size record, a missing M, X or E, a cut tail."""
    env = draw(record_list(ENVELOPE_TYPES, 8))
    content = draw(
        st.lists(
            st.tuples(st.sampled_from([R.REC_TYPE_NORM, R.REC_TYPE_CONT]), payload), max_size=5
        )
    )
    extra = draw(record_list(EXTRA_TYPES, 4))
    body = list(env)
    if draw(st.integers(0, 9)):
        body.append((R.REC_TYPE_MESG, b""))
    body += content
    if draw(st.integers(0, 9)):
        body.append((R.REC_TYPE_XTRA, b""))
    body += extra
    if draw(st.integers(0, 9)):
        body.append((R.REC_TYPE_END, b""))
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):  # stray records anywhere
        where = draw(st.integers(0, len(body)))
        body.insert(where, draw(typed_record(STRAY_TYPES)))
    head_len = 2 + 4 * R.SIZE_FIELD_WIDTH + 3
    mesg = next((i for i, r in enumerate(body) if r[0] == R.REC_TYPE_MESG), len(body))
    offset = head_len + len(encode_all(body[:mesg])) + draw(st.sampled_from([0, 0, 0, 1]))
    nrcpt = sum(r[0] in (R.REC_TYPE_RCPT, R.REC_TYPE_DONE) for r in body)
    nrcpt += draw(st.sampled_from([0, 0, 0, 1]))
    size = draw(st.integers(0, 10**6))
    sep = draw(st.sampled_from([" "] * 7 + ["\t"]))
    w = R.SIZE_FIELD_WIDTH
    head = sep.join(f"{n:{w}d}" for n in (offset, size, nrcpt, 0)).encode()
    blob = encode_record(R.REC_TYPE_SIZE, head) + encode_all(body)
    cut = draw(st.sampled_from([0] * 7 + [1, 2, 5]))
    return blob[: len(blob) - cut]
