"""tlsmgr - the TLS session-ticket key service shared by smtpd processes

SYNOPSIS
    master.cf:  tlsmgr  unix  -  -  n  1000?  1  tlsmgr
    main.cf:    smtpd_tls_session_cache_timeout = 3600s
                tls_session_ticket_cipher = aes-256-cbc

DESCRIPTION
    One process holds the key that encrypts TLS session tickets
    (tlsmgr/keys.py) and hands it to every smtpd process
    (common/tlsmgr_clnt.py, smtpd/tls_tickets.py), so that a client
    resumes its TLS session with any smtpd process, not only with the
    one that issued its ticket. The key is drawn from os.urandom, lives
    in memory only, and is replaced every
    smtpd_tls_session_cache_timeout.

    Postfix's tlsmgr also keeps the smtpd and smtp session caches
    (smtpd_tls_session_cache_database, smtp_tls_session_cache_database)
    and the PRNG exchange file; this one does not (see
    mta/common/tls_session.py for the smtp client's in-process cache).

SECURITY
    See mta/tlsmgr/server.py.
"""
