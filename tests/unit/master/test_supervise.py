"""Process accounting of one service."""

import os

from mta.config.master_cf import ServiceEntry
from mta.master import master_proto as mp
from mta.master.supervise import Service, describe_exit, service_signature


def service(maxproc=2) -> Service:
    e = ServiceEntry("s", "unix", True, True, False, 0, False, maxproc, "m")
    return Service(e, "m", ("unix", "/x", True), [], -1, -1)


def test_new_child_counts_as_available():
    svc = service()
    svc.add_child(10, 0.0)
    assert svc.avail == 1
    assert not svc.wants_process(0.0)


def test_taken_child_makes_the_listener_interesting():
    svc = service()
    svc.add_child(10, 0.0)
    svc.feed_status(mp.encode_status(mp.STATUS_TAKEN, 10))
    assert svc.avail == 0
    assert svc.used
    assert svc.wants_process(0.0)
    assert svc.children[10].use_count == 1


def test_available_again_after_the_client():
    svc = service()
    svc.add_child(10, 0.0)
    svc.feed_status(mp.encode_status(mp.STATUS_TAKEN, 10) + mp.encode_status(mp.STATUS_AVAIL, 10))
    assert svc.avail == 1


def test_records_split_across_reads():
    svc = service()
    svc.add_child(10, 0.0)
    rec = mp.encode_status(mp.STATUS_TAKEN, 10)
    svc.feed_status(rec[:2])
    assert svc.avail == 1
    svc.feed_status(rec[2:])
    assert svc.avail == 0


def test_unknown_pid_is_ignored():
    svc = service()
    svc.feed_status(mp.encode_status(mp.STATUS_TAKEN, 99))
    assert svc.avail == 0 and not svc.used


def test_maxproc_stops_spawning():
    svc = service(maxproc=2)
    for pid in (1, 2):
        svc.add_child(pid, 0.0)
        svc.on_status(mp.STATUS_TAKEN, pid)
    assert svc.at_limit()
    assert not svc.wants_process(0.0)


def test_maxproc_zero_is_unlimited():
    svc = service(maxproc=0)
    for pid in range(1, 50):
        svc.add_child(pid, 0.0)
        svc.on_status(mp.STATUS_TAKEN, pid)
    assert svc.wants_process(0.0)


def test_throttle_blocks_until_it_expires():
    svc = service()
    svc.throttle(10.0)
    assert not svc.wants_process(5.0)
    assert svc.wants_process(10.0)


def test_removing_an_available_child_lowers_avail():
    svc = service()
    svc.add_child(10, 0.0)
    assert svc.remove_child(10).pid == 10
    assert svc.avail == 0 and svc.total == 0


def test_retire_empties_the_accounting():
    svc = service()
    svc.add_child(10, 0.0)
    svc.add_child(11, 0.0)
    assert sorted(c.pid for c in svc.retire()) == [10, 11]
    assert svc.total == 0 and svc.avail == 0


def test_describe_exit():
    assert describe_exit(0) == ""
    assert describe_exit(3 << 8) == "exit status 3"
    assert describe_exit(9) == "killed by signal 9"
    pid = os.fork()
    if pid == 0:
        os._exit(7)
    assert describe_exit(os.waitpid(pid, 0)[1]) == "exit status 7"


def test_signature_ignores_position_in_file():
    a = service().entry
    b = ServiceEntry("s", "unix", True, True, False, 0, False, 2, "m", path="other", line=9)
    assert service_signature(a) == service_signature(b)
    b.overrides["x"] = "y"
    assert service_signature(a) != service_signature(b)


def test_used_record_counts_a_use_without_taking_the_child():
    svc = service()
    svc.add_child(10, 0.0)
    svc.feed_status(mp.encode_status(mp.STATUS_USED, 10))
    assert svc.children[10].use_count == 1
    assert svc.avail == 1 and svc.children[10].available
    assert not svc.used  # conditional wakeups still wait for a real client
