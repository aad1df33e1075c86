import pytest

from mta.common import dns as mta_dns
from mta.smtp import nexthop, session_cache


@pytest.fixture(autouse=True)
def fresh_caches():
    nexthop.clear_cache()
    session_cache.idle = {}
    session_cache.loop = None
    yield
    nexthop.clear_cache()
    mta_dns.set_nameservers(None)
    mta_dns.set_timeouts()
