"""Fixtures of the pipe tests: a recording script the command's user can run."""

import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest

from mta.config import load_config
from tests.support.instance import make_instance

# Records each run as argv.N (one argument per line) and stdin.N; prints the
# text of the file "say", sleeps "sleep" seconds and exits with "exit".
RECORDER = """#!/bin/sh
out="$1"
shift
n=$(ls "$out" | grep -c '^argv\\.')
printf '%s\\n' "$@" > "$out/argv.$n"
cat > "$out/stdin.$n"
id -u > "$out/uid.$n"
[ -f "$out/say" ] && cat "$out/say"
[ -f "$out/sleep" ] && sleep "$(cat "$out/sleep")"
exit "$(cat "$out/exit" 2>/dev/null || echo 0)"
"""


class Recorder:
    """A script and its output directory, reachable by user "nobody" when we are root."""

    def __init__(self, top: Path) -> None:
        self.top = top
        self.script = top / "record.sh"
        self.out = top / "out"
        self.out.mkdir()
        self.out.chmod(0o777)
        self.script.write_text(RECORDER)
        self.script.chmod(0o755)

    def args(self, *rest: str, flags: str = "", extra: tuple = ()) -> list[str]:
        """master.cf attributes running the recorder with rest as its arguments."""
        out = [f"flags={flags}"] if flags else []
        out += ["user=nobody", *extra, f"argv={self.script}", str(self.out), *rest]
        return out

    def behave(self, exit: int = 0, say: str = "", sleep: float = 0) -> None:
        (self.out / "exit").write_text(str(exit))
        if say:
            (self.out / "say").write_text(say)
        if sleep:
            (self.out / "sleep").write_text(str(sleep))

    def runs(self) -> int:
        return len(list(self.out.glob("argv.*")))

    def argv(self, n: int = 0) -> list[str]:
        return (self.out / f"argv.{n}").read_text().splitlines()

    def stdin(self, n: int = 0) -> bytes:
        return (self.out / f"stdin.{n}").read_bytes()

    def uid(self, n: int = 0) -> int:
        return int((self.out / f"uid.{n}").read_text())


@pytest.fixture
def recorder():
    # pytest's tmp_path sits below a 0700 directory that "nobody" cannot enter
    top = Path(tempfile.mkdtemp(prefix="mta-pipe-"))
    top.chmod(stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    try:
        yield Recorder(top)
    finally:
        shutil.rmtree(top, ignore_errors=True)


@pytest.fixture
def pipe_cfg(tmp_path, request):
    marker = request.node.get_closest_marker("main_cf")
    main_cf = marker.args[0] if marker else ""
    return load_config(str(make_instance(tmp_path, main_cf=main_cf)))


def running_as_root() -> bool:
    return os.geteuid() == 0
