"""verify - the address verification service

SYNOPSIS
    master.cf:  verify  unix  -  -  n  -  1  verify
    main.cf:    smtpd_recipient_restrictions = ... reject_unverified_recipient

DESCRIPTION
    Keeps what is known about addresses (deliverable, undeliverable,
    not known yet) in a cache (verify/cache.py) and finds out what is
    not known by sending probe messages through the real delivery path
    (verify/server.py). smtpd asks it through common/verify_clnt.py for
    reject_unverified_recipient and reject_unverified_sender; qmgr
    reports each probe's result back to it.

SECURITY
    See mta/verify/server.py.
"""
