"""Type stub for the compiled record kernel (same API as record_ref)."""

REC_TYPE_NORM: int
REC_TYPE_CONT: int
MAX_LENGTH_BYTES: int
MAX_RECORD: int
MAX_DIGITS: int

def encode_length(n: int) -> bytes: ...
def encode_record(rtype: int, payload: bytes | bytearray | memoryview) -> bytes: ...
def decode_records(
    buf: bytes | bytearray | memoryview,
    start: int = 0,
    final: bool = False,
    skip_content: bool = False,
) -> tuple[list[tuple[int, int, bytes]], int]: ...
def content_text(
    buf: bytes | bytearray | memoryview, start: int = 0, line_end: bytes = b"\n"
) -> tuple[bytes, int]: ...
def scan_envelope(
    buf: bytes | bytearray | memoryview, whole: bool = True
) -> tuple[int, int, int, int, str, list[tuple[int, str]]] | None: ...

class ContentEncoder:
    limit: int
    def __init__(self, limit: int) -> None: ...
    def feed(self, data: bytes | bytearray | memoryview) -> bytes: ...
    def flush(self) -> bytes: ...
