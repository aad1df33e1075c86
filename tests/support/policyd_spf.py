"""Debian's policyd-spf (postfix-policyd-spf-python) as a test peer.

policyd-spf resolves through its SPF library's DNS module, which reads
/etc/resolv.conf; WRAPPER (run with SYSTEM_PYTHON, the interpreter the
package belongs to) points that module at the loopback DNS server of the
test (tests/support/dns_server.py) and then runs policyd-spf's main with
the configuration file given: argv = [dns_host, dns_port, conf_path].
"""

from __future__ import annotations

import os
import subprocess

POLICYD_SPF = "/usr/bin/policyd-spf"
SYSTEM_PYTHON = "/usr/bin/python3"  # the interpreter policyd-spf and its modules belong to

WRAPPER = """
import sys
import spf  # picks dnspython when present, else pydns (Debian's python3-dns)
if spf.DNSLookup is spf.DNSLookup_pydns:
    import DNS
    DNS.defaults["server"] = [sys.argv[1]]
    DNS.defaults["port"] = int(sys.argv[2])
else:
    import dns.resolver
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [sys.argv[1]]
    resolver.port = int(sys.argv[2])
    dns.resolver.default_resolver = resolver
sys.argv = ["policyd-spf", sys.argv[3]]
from spf_engine.policyd_spf import main
sys.exit(main())
"""


def conf(temperror_defer: bool, lookup_time: int | None = None) -> str:
    """policyd-spf.conf: Fail rejects, test mode, 127.0.0.0/8 not skipped."""
    return (
        "debugLevel = 0\n"
        "TestOnly = 1\n"
        "HELO_reject = Fail\n"
        "Mail_From_reject = Fail\n"
        "PermError_reject = False\n"
        f"TempError_Defer = {temperror_defer}\n"
        + (f"Lookup_Time = {lookup_time}\n" if lookup_time is not None else "")
        # not the default 127.0.0.0/8, where the tests are
        + "skip_addresses = 198.51.100.0/24\n"
        "Hide_Receiver = Yes\n"
    )


def unusable() -> str | None:
    """Why policyd-spf cannot run here, or None."""
    if not os.path.exists(POLICYD_SPF):
        return "postfix-policyd-spf-python is not installed"
    probe = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import spf, spf_engine.policyd_spf"],
        capture_output=True,
        timeout=30,
    )
    if probe.returncode != 0:
        return f"policyd-spf cannot be loaded: {probe.stderr.decode()[-200:]}"
    return None
