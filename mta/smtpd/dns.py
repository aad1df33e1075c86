"""smtpd.dns - the old name of mta/common/dns.py, kept for smtpd and its tests

SYNOPSIS
    from mta.smtpd import dns as smtpd_dns

DESCRIPTION
    Re-exports mta.common.dns; the module moved there when the smtp
    client needed MX look-ups too. The state (name servers, timeouts,
    the built resolver) is the one of mta.common.dns.

SECURITY
    See mta/common/dns.py.
"""

from mta.common.dns import *  # noqa: F403
from mta.common.dns import (  # noqa: F401
    DNS_ENV,
    DNS_INVAL,
    DNS_LIFETIME,
    DNS_NODATA,
    DNS_NOTFOUND,
    DNS_NULLMX,
    DNS_OK,
    DNS_RETRY,
    DNS_TIMEOUT,
    DnsAnswer,
    MxAnswer,
    _state,
    get_resolver,
    host_addresses,
    host_status,
    lookup,
    lookup_mx,
    mail_domain_status,
    parse_nameservers,
    set_nameservers,
    set_timeouts,
)
