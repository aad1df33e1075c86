"""python -m mta.tlsproxy - stand-in for Postfix's tlsproxy(8), which mta does not have

SYNOPSIS
    master.cf:  tlsproxy  unix  -  -  n  -  0  tlsproxy

DESCRIPTION
    Postfix's postscreen asks tlsproxy to run STARTTLS for clients in
    its dummy SMTP session. mta's postscreen never announces or accepts
    STARTTLS (smtpd does, after the hand-off), so nothing asks this
    service. The module exists so that the stock POSTSCREEN_README
    master.cf line starts cleanly; a request that arrives all the same
    is refused: one warning line, and the connection is closed.

SECURITY
    Reads nothing from its clients.
"""

from mta import log
from mta.master.multi_server import run_multi_server


async def refuse_request(reader, writer, ctx) -> None:
    log.warning("tlsproxy: TLS proxy service is not available in mta; request refused")


run_multi_server("tlsproxy", refuse_request)
