"""addr: reference vs compiled address kernels, and the stdlib for comparison."""

import email.utils

import pytest

from mta.trivial_rewrite import address as A

PATHS = [b"<user%d@example%d.org> SIZE=%d BODY=8BITMIME" % (i, i % 13, i * 7) for i in range(1000)]
TO_VALUE = b", ".join(
    b'"User %d" <user%d@example.org>' % (i, i) if i % 2 else b"user%d@example.org (c)" % i
    for i in range(50)
)
TO_TEXT = TO_VALUE.decode()


@pytest.mark.benchmark(group="parse_path: 1000 MAIL FROM arguments")
@pytest.mark.parametrize(
    "impl", [n for n, fn in {"ref": A.parse_path_ref, "c": A.parse_path_c}.items() if fn]
)
def test_parse_path_1000(benchmark, impl):
    fn = {"ref": A.parse_path_ref, "c": A.parse_path_c}[impl]

    def run():
        return [fn(p) for p in PATHS]

    assert len(benchmark(run)) == 1000


def _stdlib_paths():
    return [email.utils.parseaddr(p.decode().split(" ", 1)[0]) for p in PATHS]


@pytest.mark.benchmark(group="parse_path: 1000 MAIL FROM arguments")
def test_parse_path_1000_stdlib_parseaddr(benchmark):
    assert len(benchmark(_stdlib_paths)) == 1000


ADDR_LIST = {"ref": A.parse_addr_list_ref, "c": A.parse_addr_list_c}


@pytest.mark.benchmark(group="parse_addr_list: To: with 50 addresses")
@pytest.mark.parametrize("impl", [n for n, fn in ADDR_LIST.items() if fn])
def test_addr_list_50(benchmark, impl):
    assert len(benchmark(ADDR_LIST[impl], TO_VALUE)) == 50


@pytest.mark.benchmark(group="parse_addr_list: To: with 50 addresses")
def test_addr_list_50_stdlib_getaddresses(benchmark):
    assert len(benchmark(email.utils.getaddresses, [TO_TEXT])) == 50


SPLIT = {"ref": A.split_addr_ref, "c": A.split_addr_c}
ADDRS = ['"quoted@local"@example.org', "plain.user+ext@sub.example.com"] * 500


@pytest.mark.benchmark(group="split_addr: 1000 addresses")
@pytest.mark.parametrize("impl", [n for n, fn in SPLIT.items() if fn])
def test_split_1000(benchmark, impl):
    fn = SPLIT[impl]
    assert len(benchmark(lambda: [fn(a) for a in ADDRS])) == 1000
