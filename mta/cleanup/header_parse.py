"""cleanup.header_parse - header kernels, bound to the fastest version

SYNOPSIS
    from mta.cleanup.header_parse import HeaderParser, header_id, is_header, unfold, fold
    from mta.cleanup.header_parse import HDR_FROM, HDR_TO   # the header table

DESCRIPTION
    Each public name is the compiled kernel from mta/_speedups/headers
    when it is built and importable, else the reference version from
    headers_ref; the *_ref and *_c names stay importable for tests and
    benchmarks (the *_c ones are None without the extension). The HDR_*
    numbers and HEADER_NAMES come from headers_ref for both. See
    mta/_speedups/headers_ref.py for the behaviour.

SECURITY
    Sees untrusted message content; see mta/_speedups/headers_ref.py.
"""

from mta._speedups import NO_EXTENSIONS
from mta._speedups.headers_ref import *  # noqa: F403 - the HDR_* table
from mta._speedups.headers_ref import HEADER_NAMES  # noqa: F401
from mta._speedups.headers_ref import HeaderParser as HeaderParser_ref
from mta._speedups.headers_ref import fold as fold_ref
from mta._speedups.headers_ref import header_id as header_id_ref
from mta._speedups.headers_ref import is_header as is_header_ref
from mta._speedups.headers_ref import unfold as unfold_ref

HeaderParser_c = fold_c = header_id_c = is_header_c = unfold_c = None
if not NO_EXTENSIONS:
    try:
        from mta._speedups.headers import HeaderParser as HeaderParser_c
        from mta._speedups.headers import fold as fold_c
        from mta._speedups.headers import header_id as header_id_c
        from mta._speedups.headers import is_header as is_header_c
        from mta._speedups.headers import unfold as unfold_c
    except ImportError:
        pass

HeaderParser = HeaderParser_c or HeaderParser_ref
fold = fold_c or fold_ref
header_id = header_id_c or header_id_ref
is_header = is_header_c or is_header_ref
unfold = unfold_c or unfold_ref
