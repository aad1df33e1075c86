"""smtpd.wire - the SMTP server's byte-level kernels, bound to the fastest version

SYNOPSIS
    from mta.smtpd.wire import split_lines, parse_command, parse_esmtp_params, DataStream

DESCRIPTION
    Each public name is the compiled kernel from mta/_speedups/smtpline
    when it is built and importable, else the reference version; the
    *_ref and *_c names stay importable for tests and benchmarks (the
    *_c ones are None without the extension).

SECURITY
    Sees raw client bytes; see mta/_speedups/smtpline_ref.py.
"""

from mta._speedups import NO_EXTENSIONS
from mta._speedups.smtpline_ref import DataStream as DataStream_ref
from mta._speedups.smtpline_ref import LineTooLong
from mta._speedups.smtpline_ref import parse_command as parse_command_ref
from mta._speedups.smtpline_ref import parse_esmtp_params as parse_esmtp_params_ref
from mta._speedups.smtpline_ref import split_lines as split_lines_ref

split_lines_c = parse_command_c = parse_esmtp_params_c = DataStream_c = None
if not NO_EXTENSIONS:
    try:
        from mta._speedups.smtpline import DataStream as DataStream_c
        from mta._speedups.smtpline import parse_command as parse_command_c
        from mta._speedups.smtpline import parse_esmtp_params as parse_esmtp_params_c
        from mta._speedups.smtpline import split_lines as split_lines_c
    except ImportError:
        pass

split_lines = split_lines_c or split_lines_ref
parse_command = parse_command_c or parse_command_ref
parse_esmtp_params = parse_esmtp_params_c or parse_esmtp_params_ref
DataStream = DataStream_c or DataStream_ref

__all__ = ["LineTooLong", "split_lines", "parse_command", "parse_esmtp_params", "DataStream"]
