"""trivial_rewrite.address - address kernels, bound to the fastest version

SYNOPSIS
    from mta.trivial_rewrite.address import (
        AddrError, parse_path, split_addr, quote_local, unquote_local, canon_addr,
        scan_addr_list, parse_addr_list)

DESCRIPTION
    Each public name is the compiled kernel from mta/_speedups/addr when
    it is built and importable, else the reference version from
    addr_ref; the *_ref and *_c names stay importable for tests and
    benchmarks (the *_c ones are None without the extension). See
    mta/_speedups/addr_ref.py for what each function does.

SECURITY
    Sees untrusted addresses; see mta/_speedups/addr_ref.py.
"""

from mta._speedups import NO_EXTENSIONS
from mta._speedups.addr_ref import AddrError
from mta._speedups.addr_ref import canon_addr as canon_addr_ref
from mta._speedups.addr_ref import parse_addr_list as parse_addr_list_ref
from mta._speedups.addr_ref import parse_path as parse_path_ref
from mta._speedups.addr_ref import quote_local as quote_local_ref
from mta._speedups.addr_ref import scan_addr_list as scan_addr_list_ref
from mta._speedups.addr_ref import split_addr as split_addr_ref
from mta._speedups.addr_ref import unquote_local as unquote_local_ref

parse_path_c = split_addr_c = quote_local_c = unquote_local_c = None
canon_addr_c = scan_addr_list_c = parse_addr_list_c = None
if not NO_EXTENSIONS:
    try:
        from mta._speedups.addr import canon_addr as canon_addr_c
        from mta._speedups.addr import parse_addr_list as parse_addr_list_c
        from mta._speedups.addr import parse_path as parse_path_c
        from mta._speedups.addr import quote_local as quote_local_c
        from mta._speedups.addr import scan_addr_list as scan_addr_list_c
        from mta._speedups.addr import split_addr as split_addr_c
        from mta._speedups.addr import unquote_local as unquote_local_c
    except ImportError:
        pass

parse_path = parse_path_c or parse_path_ref
split_addr = split_addr_c or split_addr_ref
quote_local = quote_local_c or quote_local_ref
unquote_local = unquote_local_c or unquote_local_ref
canon_addr = canon_addr_c or canon_addr_ref
scan_addr_list = scan_addr_list_c or scan_addr_list_ref
parse_addr_list = parse_addr_list_c or parse_addr_list_ref

__all__ = [
    "AddrError",
    "parse_path",
    "split_addr",
    "quote_local",
    "unquote_local",
    "canon_addr",
    "scan_addr_list",
    "parse_addr_list",
]
