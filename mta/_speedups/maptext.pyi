"""Type stub for the compiled maptext kernel (same API as maptext_ref)."""

def parse_table_text(
    data: bytes | bytearray | memoryview, fold: bool
) -> tuple[list[tuple[bytes, bytes]], list[tuple[int, str]]]: ...
