"""common.dkim_canon - DKIM canonicalization kernels, bound to the fastest version

SYNOPSIS
    from mta.common.dkim_canon import BodyCanon, header_relaxed, header_simple

DESCRIPTION
    Each public name is the compiled kernel from mta/_speedups/dkimcanon
    when it is built and importable, else the reference version; the
    *_ref and *_c names stay importable for tests and benchmarks (the
    *_c ones are None without the extension). See
    mta/_speedups/dkimcanon_ref.py for the behaviour.

SECURITY
    Sees untrusted message content; see mta/_speedups/dkimcanon_ref.py.
"""

from mta._speedups import NO_EXTENSIONS
from mta._speedups.dkimcanon_ref import BodyCanon as BodyCanon_ref
from mta._speedups.dkimcanon_ref import header_relaxed as header_relaxed_ref
from mta._speedups.dkimcanon_ref import header_simple as header_simple_ref

BodyCanon_c = header_relaxed_c = header_simple_c = None
if not NO_EXTENSIONS:
    try:
        from mta._speedups.dkimcanon import BodyCanon as BodyCanon_c
        from mta._speedups.dkimcanon import header_relaxed as header_relaxed_c
        from mta._speedups.dkimcanon import header_simple as header_simple_c
    except ImportError:
        pass

BodyCanon = BodyCanon_c or BodyCanon_ref
header_relaxed = header_relaxed_c or header_relaxed_ref
header_simple = header_simple_c or header_simple_ref

__all__ = ["BodyCanon", "header_relaxed", "header_simple"]
