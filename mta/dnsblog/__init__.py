"""dnsblog - the DNS list look-up service postscreen asks (see mta/dnsblog/server.py)."""
