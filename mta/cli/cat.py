"""cli.cat - show queue files (postcat)

SYNOPSIS
    mta cat [-c DIR] [-b] [-e] [-h] [-o] [-r] [-v] [FILE ...]
    mta cat [-c DIR] [-b] [-e] [-h] [-o] -q QUEUE_ID ...

DESCRIPTION
    Prints a queue file as postcat does: "*** ENVELOPE RECORDS name ***"
    with one "label: value" line per envelope record, "*** MESSAGE
    CONTENTS name ***" with the message, "*** HEADER EXTRACTED name ***"
    with records after the content, and "*** MESSAGE FILE END name ***".
    -e shows only the envelope, -h only the message headers, -b only the
    body (they combine). -q takes queue ids and looks for them in the
    queues under queue_directory. -o prefixes each record with its byte
    offset. -v also shows record types and the size record's fields.
    With no FILE, a queue file is read from standard input.

    A damaged file prints what could be read, then one line
    "mta cat: warning: NAME: what is wrong"; the other files are shown
    all the same, and the exit status is 1.

SECURITY
    Reads queue files; run it as root or mail_owner. Queue ids from the
    command line are checked before they become paths.
"""

from __future__ import annotations

import sys
import time

from mta.cli.common import load, make_parser
from mta.config.errors import ConfigError
from mta.queue import rec_type as R
from mta.queue.queue_file import RecordError, decode_records, find_queue_file

# queues searched by -q, in the order postcat searches them
SEARCH_QUEUES = ("incoming", "active", "deferred", "hold", "maildrop")

LABELS = {
    R.REC_TYPE_SIZE: "message_size",
    R.REC_TYPE_TIME: "message_arrival_time",
    R.REC_TYPE_ATTR: "named_attribute",
    R.REC_TYPE_FULL: "sender_fullname",
    R.REC_TYPE_FROM: "sender",
    R.REC_TYPE_ORCP: "original_recipient",
    R.REC_TYPE_DSN_ORCPT: "dsn_orig_rcpt",
    R.REC_TYPE_DSN_NOTIFY: "dsn_notify_flags",
    R.REC_TYPE_RCPT: "recipient",
    R.REC_TYPE_DONE: "done_recipient",
    R.REC_TYPE_WARN: "warning_message_time",
}


def _text(payload: bytes) -> str:
    return payload.decode("utf-8", "surrogateescape")


def _value(rtype: int, payload: bytes) -> str:
    if rtype == R.REC_TYPE_TIME:
        try:
            seconds = int(payload.split()[0])
        except (IndexError, ValueError):
            return _text(payload)
        return time.strftime("%a %b %e %H:%M:%S %Y", time.localtime(seconds))
    return _text(payload)


class Printer:
    """Write the sections of one queue file as the flags ask."""

    def __init__(self, args, out) -> None:
        self.args = args
        self.out = out
        parts = args.envelope or args.headers or args.body
        self.want_envelope = args.envelope or not parts
        self.want_headers = args.headers or not parts
        self.want_body = args.body or not parts
        self.banners = not parts or args.envelope

    def line(self, offset: int, text: str) -> None:
        if self.args.offsets:
            self.out.write(f"{offset:>10d} ")
        self.out.write(text + "\n")

    def show(self, name: str, data: bytes) -> str | None:
        """Print data; return an error text when the file is damaged."""
        error = None
        try:
            records, _ = decode_records(data, 0, True)
        except RecordError as exc:
            error = str(exc)
            records, _ = decode_records(data, 0, False)
        section = "envelope"
        in_header = True
        pieces: list[bytes] = []
        if self.banners and self.want_envelope:
            self.out.write(f"*** ENVELOPE RECORDS {name} ***\n")
        for offset, rtype, payload in records:
            if section == "content":
                if rtype in (R.REC_TYPE_NORM, R.REC_TYPE_CONT):
                    pieces.append(payload)
                    if rtype == R.REC_TYPE_CONT:
                        continue
                    text = _text(b"".join(pieces))
                    pieces = []
                    if in_header and text == "":
                        in_header = False
                        if self.want_headers and self.want_body:
                            self.line(offset, text)
                        continue
                    if (in_header and self.want_headers) or (not in_header and self.want_body):
                        self.line(offset, text)
                    continue
                if rtype == R.REC_TYPE_XTRA:
                    section = "extracted"
                    if self.banners and self.want_envelope:
                        self.out.write(f"*** HEADER EXTRACTED {name} ***\n")
                    continue
                return f"unexpected record {chr(rtype)!r} in the content at offset {offset}"
            if rtype == R.REC_TYPE_MESG:
                section = "content"
                if self.banners and (self.want_headers or self.want_body):
                    self.out.write(f"*** MESSAGE CONTENTS {name} ***\n")
                continue
            if rtype == R.REC_TYPE_END:
                if self.banners and self.want_envelope:
                    self.out.write(f"*** MESSAGE FILE END {name} ***\n")
                continue
            if not self.want_envelope:
                continue
            label = LABELS.get(rtype, f"record type {chr(rtype)!r}")
            if rtype == R.REC_TYPE_TIME and self.args.verbose:
                self.line(offset, f"create_time: {_value(rtype, payload)}")
            text = f"{label}: {_value(rtype, payload)}"
            if self.args.verbose:
                text = f"{chr(rtype)} {text}"
            self.line(offset, text)
        if error is None and (not records or records[-1][1] != R.REC_TYPE_END):
            error = "truncated queue file: no end record"
        return error


def main(argv: list[str], command: str = "cat") -> int:
    parser = make_parser(command, "Show queue files, as postcat does.", add_help=False)
    parser.add_argument("-b", dest="body", action="store_true", help="show the message body")
    parser.add_argument("-e", dest="envelope", action="store_true", help="show the envelope")
    parser.add_argument("-h", dest="headers", action="store_true", help="show message headers")
    parser.add_argument("-o", dest="offsets", action="store_true", help="show record offsets")
    parser.add_argument("-q", dest="by_id", action="store_true", help="arguments are queue ids")
    parser.add_argument(
        "-r", dest="records", action="store_true", help="records in file order (always so)"
    )
    parser.add_argument("--help", action="help", help="show this help and exit")
    parser.add_argument("files", nargs="*", metavar="FILE|QUEUE_ID")
    args = parser.parse_args(argv)
    printer = Printer(args, sys.stdout)
    status = 0
    sources: list[tuple[str, str | None]] = []
    try:
        if args.by_id:
            cfg = load(args)
            queue_dir = cfg.get("queue_directory")
            depth = cfg.get_int("hash_queue_depth")
            hashed = tuple(cfg.get_list("hash_queue_names"))
            for qid in args.files:
                found = find_queue_file(queue_dir, qid, SEARCH_QUEUES, depth, hashed)
                if found is None:
                    sys.stderr.write(f"mta {command}: warning: {qid}: no such queue file\n")
                    status = 1
                    continue
                queue, path = found
                sources.append((f"{queue}/{qid}", path))
        else:
            sources = [(f, f) for f in args.files] or [("stdin", None)]
    except ConfigError as exc:
        sys.stderr.write(f"mta {command}: fatal: {exc}\n")
        return 1
    for name, path in sources:
        try:
            if path is None:
                data = sys.stdin.buffer.read()
            else:
                with open(path, "rb") as f:
                    data = f.read()
        except OSError as exc:
            sys.stderr.write(f"mta {command}: warning: {name}: {exc.strerror}\n")
            status = 1
            continue
        error = printer.show(name, data)
        sys.stdout.flush()
        if error:
            sys.stderr.write(f"mta {command}: warning: {name}: {error}\n")
            status = 1
    return status
