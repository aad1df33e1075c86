"""master.privs: effective_ids() for a block, and back to root after."""

import os
import shutil
import tempfile

import pytest

from mta.master.privs import effective_ids

NOBODY = 65534  # an id no file of the test belongs to


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_effective_ids_own_the_files_made_in_the_block():
    shared = tempfile.mkdtemp(prefix="mta-privs-")  # pytest's tmp_path is root's only
    try:
        os.chmod(shared, 0o777)
        with effective_ids(NOBODY, NOBODY):
            assert (os.geteuid(), os.getegid()) == (NOBODY, NOBODY)
            with open(os.path.join(shared, "f"), "w") as f:
                f.write("x")
        st = os.stat(os.path.join(shared, "f"))
        assert (st.st_uid, st.st_gid) == (NOBODY, NOBODY)
        assert (os.geteuid(), os.getegid()) == (0, 0)
    finally:
        shutil.rmtree(shared)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_effective_ids_come_back_after_an_error():
    with pytest.raises(RuntimeError), effective_ids(NOBODY, NOBODY):
        raise RuntimeError("boom")
    assert (os.geteuid(), os.getegid()) == (0, 0)


def test_effective_ids_of_root_change_nothing():
    before = (os.geteuid(), os.getegid())
    with effective_ids(0, 0):
        assert (os.geteuid(), os.getegid()) == before
