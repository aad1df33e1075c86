"""anvil - the connection and rate counting service shared by smtpd processes

SYNOPSIS
    master.cf:  anvil  unix  -  -  n  -  1  anvil
    main.cf:    smtpd_client_connection_count_limit = 50
                smtpd_client_connection_rate_limit = 30

DESCRIPTION
    One process counts, per client ident (service:address), the
    connections open now and the connections, messages and recipients
    of the current anvil_rate_time_unit, so that every smtpd process
    enforces the same per-client limits (anvil/server.py). smtpd asks it
    through common/anvil_clnt.py and applies the limits in
    smtpd/limits.py.

SECURITY
    See mta/anvil/server.py.
"""
