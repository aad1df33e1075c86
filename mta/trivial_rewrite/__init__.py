"""mta.trivial_rewrite - rewrite addresses to standard form and resolve them

SYNOPSIS
    from mta.trivial_rewrite import Rewriter, Resolver, Resolved
    Rewriter(cfg).rewrite("user", "local")          # "user@myorigin.example"
    Resolver(cfg).resolve("user@example.com")       # Resolved(transport="smtp", ...)

DESCRIPTION
    What Postfix's trivial-rewrite does, as a library: rewrite.py turns
    an address into user@fully.qualified.domain, resolve.py says which
    address class it belongs to and where it goes (transport, next hop,
    recipient), transport.py applies transport(5) tables, and address.py
    binds the address kernels (mta/_speedups/addr). cleanup and, later,
    qmgr call them in-process; "mta rewrite" shows what they do.

SECURITY
    Addresses are untrusted; they are compared and used as lookup keys.

SEE ALSO
    trivial-rewrite(8), ADDRESS_REWRITING_README, ADDRESS_CLASS_README
"""

from mta.trivial_rewrite.resolve import Resolved, Resolver
from mta.trivial_rewrite.rewrite import Rewriter

__all__ = ["Resolved", "Resolver", "Rewriter"]
