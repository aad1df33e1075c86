"""tlsproxy - placeholder for Postfix's TLS proxy (see mta/tlsproxy/__main__.py)."""
