"""What a service loads before it gives up root, and who may read the installation."""

from __future__ import annotations

import os
import pwd
import shutil
import sys
import tempfile

import pytest

from mta.master.preload import deferred_imports, preload_deferred_imports
from mta.master.privs import User, python_paths, python_unreadable


def test_indented_imports_are_found_and_top_level_ones_are_not():
    source = (
        b"import os\n"
        b"from mta import log\n"
        b"def f():\n"
        b"    from mta.bounce.notice import send_notice\n"
        b"    import json, mta.cleanup\n"
        b"try:\n"
        b"\timport uvloop\n"
        b"except ImportError:\n"
        b"    pass\n"
        b"    x = 'from the null sender'\n"
    )
    # send_notice is a candidate module too: it fails to import and is passed over
    found = {"mta.bounce.notice", "mta.bounce.notice.send_notice", "json", "uvloop"}
    assert deferred_imports(source) == found


def test_modules_named_in_a_parenthesized_from_import_of_mta_are_candidates():
    source = (
        b"def load():\n"
        b"    from mta.maps import (  # noqa: F401\n"
        b"        dict_sqlite,\n"
        b"        dict_cidr as cidr,  # a comment\n"
        b"    )\n"
        b"    from os import path\n"
    )
    found = {"mta.maps", "mta.maps.dict_sqlite", "mta.maps.dict_cidr", "os"}
    assert deferred_imports(source) == found


def test_the_table_types_are_loaded_before_the_drop(monkeypatch):
    # a table opened after the drop must not have to read its type's module (and the
    # standard library module it needs, sqlite3) as mail_owner
    for name in [m for m in sys.modules if m.startswith("mta.maps.dict_sqlite")]:
        monkeypatch.delitem(sys.modules, name)
    import mta.maps.maps  # noqa: F401 - loads its table types in a function

    preload_deferred_imports()
    assert "mta.maps.dict_sqlite" in sys.modules
    assert "psycopg" not in preload_deferred_imports()  # too big for every process


def test_what_qmgr_imports_later_is_loaded_before(monkeypatch):
    for name in [m for m in sys.modules if m.startswith("mta.bounce.notice")]:
        monkeypatch.delitem(sys.modules, name)
    import mta.qmgr.manager  # noqa: F401 - qmgr imports the notice module in a function

    preload_deferred_imports()
    assert "mta.bounce.notice" in sys.modules


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can ask for another account")
def test_directories_nobody_cannot_read_are_named():
    nobody = pwd.getpwnam("nobody")
    user = User("nobody", nobody.pw_uid, nobody.pw_gid)
    top = tempfile.mkdtemp(dir="/tmp")  # pytest's tmp_path is in a 0700 directory
    try:
        os.chmod(top, 0o755)
        os.mkdir(os.path.join(top, "open"), 0o755)
        os.mkdir(os.path.join(top, "closed"), 0o700)
        paths = [os.path.join(top, "open"), os.path.join(top, "closed")]
        assert python_unreadable(user, paths) == [os.path.join(top, "closed")]
    finally:
        shutil.rmtree(top)


def test_python_paths_start_with_the_package():
    import mta

    assert python_paths()[0] == os.path.dirname(os.path.abspath(mta.__file__))
