"""tests.support.sendmail - run the sendmail command against an instance and list its maildrop."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SENDMAIL = [sys.executable, "-m", "mta.cli.sendmail"]


def sendmail(cdir: Path, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
    """sendmail -C cdir ARGS with stdin as its input; output captured, 30 s at the most."""
    return subprocess.run(
        [*SENDMAIL, "-C", str(cdir), *args], input=stdin, capture_output=True, timeout=30
    )


def maildrop(cdir: Path) -> list[str]:
    """The finished files in the instance's maildrop directory, sorted."""
    d = cdir.parent / "spool" / "maildrop"
    return sorted(str(d / f) for f in os.listdir(d) if not f.startswith("."))
