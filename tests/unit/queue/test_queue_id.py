"""Queue ids: round trip, ordering by time, and the path-safety check."""

from hypothesis import given
from hypothesis import strategies as st

from mta.queue.queue_id import is_queue_id, make_queue_id, queue_id_inode, queue_id_time

times = st.floats(min_value=0, max_value=2**33, allow_nan=False).map(lambda t: round(t, 6))
inodes = st.integers(min_value=1, max_value=2**40)


@given(times, inodes)
def test_round_trip(when, inode):
    qid = make_queue_id(when, inode)
    assert is_queue_id(qid)
    assert round(queue_id_time(qid) * 1e6) == round(when * 1e6)
    assert queue_id_inode(qid) == inode


@given(times, times, inodes, inodes)
def test_ids_sort_by_time(t1, t2, i1, i2):
    a, b = make_queue_id(t1, i1), make_queue_id(t2, i2)
    if round(t1 * 1e6) < round(t2 * 1e6):
        assert a < b


def test_same_time_different_inode_differs():
    assert make_queue_id(1e9, 5) != make_queue_id(1e9, 6)


def test_path_tricks_are_not_queue_ids():
    for text in [
        "",
        "../../etc/passwd",
        "5BRdsX0QmDzJ9MV/x",
        "5BRdsX0QmD",
        "5BRdsX0QmDz",
        "a" * 40,
    ]:
        assert not is_queue_id(text)
