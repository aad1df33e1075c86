"""config.errors - the one exception for bad configuration

SYNOPSIS
    from mta.config.errors import ConfigError
    raise ConfigError("bad boolean", path="/etc/mta/main.cf", line=12, param="x")

DESCRIPTION
    str() of a ConfigError is one line naming the file, the line and the
    parameter when they are known: "FILE, line N: parameter NAME: message".
    Commands print exactly that line and exit non-zero.

SECURITY
    Sees no untrusted input.
"""


class ConfigError(Exception):
    """A configuration problem, located as precisely as the caller knows."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.line = line
        self.param = param

    def __str__(self) -> str:
        parts = []
        if self.path:
            parts.append(self.path if self.line is None else f"{self.path}, line {self.line}")
        if self.param:
            parts.append(f"parameter {self.param}")
        parts.append(self.message)
        return ": ".join(parts)
