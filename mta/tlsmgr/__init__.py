"""tlsmgr - TLS session-ticket keys for smtpd, the TLS session cache of smtp

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

    It also keeps the smtp and lmtp clients' session cache
    (smtp_tls_session_cache_database, lmtp_tls_session_cache_database:
    tlsmgr/scache.py), so that a new client process resumes the
    sessions others made (mta/common/tls_session.py).

    Unlike Postfix's, it keeps no server-side session cache
    (smtpd_tls_session_cache_database: tickets make it unneeded for
    clients that support them) and no PRNG exchange file (OpenSSL
    seeds itself from the kernel).

SECURITY
    See mta/tlsmgr/server.py.
"""
