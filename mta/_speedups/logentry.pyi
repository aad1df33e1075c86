"""Type stub for the compiled log entry kernel (same API as logentry_ref)."""

LOG_ACTIONS: frozenset[str]

def latest_reasons(data: bytes | bytearray | memoryview) -> dict[int, str]: ...
