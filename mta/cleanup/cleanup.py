"""cleanup.cleanup - the cleanup library: one message in, one durable queue file out

SYNOPSIS
    from mta.cleanup import Cleanup
    cleanup = Cleanup(cfg)                        # once per process
    job = cleanup.open(sender, attrs, local_submit=False, flags=0, requeue=None)
    job.add_recipient("user@example.com", orig="User@Example.COM", notify=0, dsn_orcpt="")
    job.write(chunk)                              # content as received, cut anywhere
    result = job.close("incoming")                # fsync + rename; may block: use a thread
    result.action, result.queue_id, result.reply  # "queued", "4F3A...", ""
    job.abort()

DESCRIPTION
    What Postfix's cleanup does before a message enters the queue:

    Envelope. The sender and each recipient are rewritten to standard
    form (trivial-rewrite, "local" rule set), mapped through
    sender_/recipient_canonical_maps and canonical_maps, masqueraded
    (masquerade_domains), and each recipient is expanded through
    virtual_alias_maps (cleanup.addresses). Duplicate recipients are
    dropped (remembering up to duplicate_filter_limit of them; with
    enable_original_recipient the original address counts too).
    always_bcc, sender_bcc_maps and recipient_bcc_maps add recipients
    with NOTIFY=NEVER. The envelope attribute "verp_delimiters" (XVERP,
    sendmail -XV; common/verp.py) is written only when the message has
    a sender and the two characters pass verp_delimiter_filter;
    otherwise it is dropped with a warning, as Postfix ignores it.
    With egress_pools set, the header egress_pool_header names (X-Pool:)
    is removed, and the
    first one's value, when it is a pool name (1 to 64 of a-z 0-9 . _ -,
    compared in lower case), becomes the envelope attribute "pool".

    Headers. The header section is split by the header kernel
    (cleanup.header_parse) and held in memory until it ends, so that
    the envelope can carry what header_checks decided. Return-Path: is
    removed; Bcc: and Resent-Bcc: too for local submissions. Received:
    and Delivered-To: count against hopcount_limit. Address headers are
    rewritten (cleanup.headers) in the "local" rule set for local
    submissions and for clients that match local_header_rewrite_clients,
    in the "remote" rule set when remote_header_rewrite_domain is set,
    and not at all otherwise. For local mail (or with
    always_add_missing_headers) missing Message-Id:, Date:, From: and,
    when undisclosed_recipients_header is set, To: are added; when the
    message has Resent- headers, the Resent- versions are checked and
    added instead. A Received: header goes first (cleanup.headers).

    Checks. header_checks see primary headers, mime_header_checks MIME
    headers anywhere, nested_header_checks the headers of body parts
    and attached messages, body_checks every other line of the first
    body_checks_size_limit bytes of each part (cleanup.checks, with
    Postfix's log lines). A REJECT or DISCARD stops inspection; HOLD
    puts the file in hold/; REDIRECT and FILTER become the envelope
    attributes "redirect" and "filter" (in the extracted section when a
    body line decided; qmgr acts on them, mta/qmgr/redirect.py); BCC
    adds a recipient.

    Content filter. Every message gets the envelope attribute "filter"
    from content_filter (of the receiving service: master.cf "-o
    content_filter=" turns it off for a reinjection smtpd); a FILTER
    action overrides it, later in the file, where qmgr takes the last
    one (mta/qmgr/content_filter.py). Notices (internal mail) get the
    filter and the header and body checks only when their class
    (bounce, notify) is in internal_mail_filter_classes.
    receive_override_options no_header_body_checks turns the checks off
    and no_address_mappings the canonical maps, virtual aliases,
    masquerading and automatic BCC (mta/common/receive_override.py).
    MIME structure comes from
    cleanup.mime, up to mime_nesting_limit; without body_checks and
    MIME checks the body is streamed to the file untouched. A message
    with 8-bit bytes gets QF_8BIT. strict_7bit_headers,
    strict_8bitmime_body, strict_8bitmime and strict_mime_encoding_domain
    are cleanup.mime_strict's, for all but internal (notice) mail.

    Requeue. open(..., requeue=Requeue(arrival, warn_time, uid)) takes
    a message that was in the queue before (mta super -r): the new file
    records the old arrival time and delay-warning time, and the
    Received: header at the top names the local user who requeued it
    and the time of the requeue ("by HOST (mta, from userid N)"), as
    Postfix's pickup does for requeued mail. Rewriting, mapping and the
    checks run as they do for new mail.

    Result. close() returns CleanupResult(action, queue_id, reply, hold,
    size, nrcpt): "queued" once the file is fsynced and renamed (into
    hold/ for HOLD or close("hold")), "discarded", "rejected" with a
    reply such as "5.7.1 message content rejected", or "deferred" with
    "4.3.0 queue file write error" (full disk, unwritable spool),
    "4.3.0 temporary lookup failure" (a table did not answer) or "4.6.0
    Alias expansion error" (virtual alias limits). Replies carry no
    SMTP code; the caller adds its own. Logs: "QUEUEID: message-id=<...>",
    check actions ("QUEUEID: reject: header ... from host[addr];
    from=<...> to=<...> proto=... helo=<...>: text"). After a commit into
    incoming/ it pokes qmgr ("I" on public/qmgr), which logs "from=<...>,
    size=N, nrcpt=M (queue active)" when it takes the message.

THREADS
    A job belongs to one caller at a time. close() may run in another
    thread than open() and write() (smtpd runs it in an executor): it
    touches the job's own state, the shared read-only tables and the
    rewrite caches (plain dicts whose single operations the GIL keeps
    whole), and the log, which writes whole lines. Cleanup objects are
    shared by all jobs of a process.

SECURITY
    Sees untrusted envelope and content. Runs as mail_owner, inside
    smtpd, pickup or qmqpd, or as the cleanup service; writes only the
    queue file it creates.

SEE ALSO
    cleanup(8), header_checks(5), canonical(5), virtual(5),
    mta/queue/queue_file.py
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from mta import log
from mta.cleanup import header_parse as H
from mta.cleanup.addresses import AddressMapper, ExpansionError
from mta.cleanup.checks import NO_ACTION, Action, ContentChecks, reject_text
from mta.cleanup.dkim_sign import DkimSigning
from mta.cleanup.headers import (
    ADDRESS_HEADERS,
    RESENT_HEADERS,
    from_header,
    mail_date,
    message_id_header,
    received_header,
    rewrite_address_header,
)
from mta.cleanup.mime import (
    BOUNDARY_CLOSE,
    BOUNDARY_NONE,
    MimeStack,
    is_mime_header,
    parse_content_type,
)
from mta.cleanup.mime_strict import StrictMime
from mta.common.dkim import DkimError
from mta.common.match_list import AddrList
from mta.common.receive_override import (
    NO_ADDRESS_MAPPINGS,
    NO_HEADER_BODY_CHECKS,
    inspect_internal,
    receive_overrides,
)
from mta.common.trigger import TRIGGER_INCOMING, Kicker
from mta.common.verp import VERP_ATTR, delimiters_problem
from mta.maps import MapRetry, open_map
from mta.queue import rec_type as R
from mta.queue.paths import service_socket_path
from mta.queue.queue_file import QueueFileWriter, Recipient, iter_content
from mta.trivial_rewrite.resolve import OwnAddresses
from mta.trivial_rewrite.rewrite import Rewriter

ACTION_QUEUED = "queued"  # in the queue, durable
ACTION_DISCARDED = "discarded"  # accepted and thrown away
ACTION_REJECTED = "rejected"  # refused for good
ACTION_DEFERRED = "deferred"  # refused for now

COPY_CHUNK = 1 << 16  # bytes of a copied queue file handed to write() at a time

REPLY_WRITE_ERROR = "4.3.0 queue file write error"
REPLY_LOOKUP_ERROR = "4.3.0 temporary lookup failure"
MESSAGE_ID_LIMIT = 500  # characters of Message-ID kept in the envelope
REPLY_DKIM_ERROR = "4.7.0 DKIM signing failed"  # dkim_failure_action = defer
RECEIVED_OURS = object()  # CleanupJob.milter_received: no milter saw it, make our own
REPLY_ALIAS_ERROR = "4.6.0 Alias expansion error"
REPLY_TOO_BIG = "5.3.4 message file too big"
REPLY_HOPS = "5.4.6 too many hops"
REPLY_NO_RCPT = "5.1.0 no recipients specified"

POOL_NAME_RE = re.compile(rb"[a-z0-9._-]{1,64}\Z")  # an egress pool name (mta/common/egress.py)

_PART_PRIMARY = "primary"  # the message's own headers
_PART_MULTIPART = "multipart"  # headers of a multipart body part
_PART_NESTED = "nested"  # headers of an attached message/rfc822


@dataclass
class CleanupResult:
    action: str
    queue_id: str
    reply: str = ""
    hold: bool = False
    size: int = 0
    nrcpt: int = 0


class LocalClients:
    """local_header_rewrite_clients: which clients get "local" header rewriting."""

    def __init__(self, cfg, own: OwnAddresses) -> None:
        self.own = own
        self.inet_interfaces = False
        self.mynetworks: AddrList | None = None
        self.sasl = False
        self.tables = []
        items = cfg.get_list("local_header_rewrite_clients")
        i = 0
        while i < len(items):
            item = items[i].lower()
            if item == "permit_inet_interfaces":
                self.inet_interfaces = True
            elif item == "permit_mynetworks":
                self.mynetworks = AddrList(cfg.get_list("mynetworks"), cfg)
            elif item == "permit_sasl_authenticated":
                self.sasl = True
            elif item == "check_address_map" and i + 1 < len(items):
                i += 1
                self.tables.append(open_map(items[i], cfg))
            elif ":" in item and not item.startswith("permit_"):
                self.tables.append(open_map(items[i], cfg))
            i += 1

    def match(self, attrs: dict) -> bool:
        addr = attrs.get("client_address", "")
        if self.sasl and attrs.get("sasl_username"):
            return True
        if not addr:
            return False
        if self.inet_interfaces and addr in self.own:
            return True
        if self.mynetworks is not None and self.mynetworks.match(addr):
            return True
        return any(t.lookup(addr) is not None for t in self.tables)


class Cleanup:
    """Per-process cleanup state: configuration, tables, caches."""

    def __init__(self, cfg) -> None:
        self.cfg = cfg
        self.queue_dir = cfg.get("queue_directory")
        self.hash_depth = cfg.get_int("hash_queue_depth")
        self.hashed = tuple(cfg.get_list("hash_queue_names"))
        self.line_limit = cfg.get_size("line_length_limit")
        self.myhostname = cfg.get("myhostname")
        self.delay_warning_time = float(cfg.get_time("delay_warning_time"))
        self.mail_name = cfg.get("mail_name")
        self.header_limit = cfg.get_size("header_size_limit")
        self.size_limit = cfg.get_size("message_size_limit")
        self.hopcount_limit = cfg.get_int("hopcount_limit")
        self.token_limit = cfg.get_int("header_address_token_limit")
        self.dup_limit = cfg.get_int("duplicate_filter_limit")
        self.keep_orig = cfg.get_bool("enable_original_recipient")
        self.always_add = cfg.get_bool("always_add_missing_headers")
        self.from_format = cfg.get("header_from_format").strip().lower()
        self.undisclosed = cfg.get("undisclosed_recipients_header").strip()
        self.remote_domain = cfg.get("remote_header_rewrite_domain").strip()
        self.mime_off = cfg.get_bool("disable_mime_input_processing")
        self.mime_limit = cfg.get_int("mime_nesting_limit")
        self.verp_filter = cfg.get("verp_delimiter_filter")
        # only where pools are configured: elsewhere such a header is the sender's own
        self.pool_header = (
            cfg.get("egress_pool_header").strip().lower().encode("ascii", "replace")
            if cfg.get("egress_pools").strip()
            else b""
        )
        self.rewriter = Rewriter(cfg)
        self.addr = AddressMapper(cfg, self.rewriter)
        self.checks = ContentChecks(cfg)
        overrides = receive_overrides(cfg)
        if NO_ADDRESS_MAPPINGS in overrides:
            self.addr.disable_mappings()
        if NO_HEADER_BODY_CHECKS in overrides:
            self.checks.disable()
        self.content_filter = cfg.get("content_filter").strip()
        self.inspect_bounce = inspect_internal(cfg, "bounce")
        self.inspect_notify = inspect_internal(cfg, "notify")
        self.strict = StrictMime(cfg)
        self.local_clients = LocalClients(cfg, OwnAddresses(cfg))
        self.dkim = DkimSigning(cfg)
        self.qmgr_kicker = Kicker(
            service_socket_path(cfg.get("queue_directory"), cfg.get("queue_service_name"), False),
            TRIGGER_INCOMING,
        )

    def open(
        self,
        sender: str,
        attrs: dict,
        *,
        local_submit: bool = False,
        flags: int = 0,
        requeue: Requeue | None = None,
        internal: bool = False,
    ) -> CleanupJob:
        """Start a message from sender; attrs as in the module docstring.

        internal: mail the system made (a notice), exempt from the strict
        MIME checks as Postfix exempts its own bounces; "notify" for a
        postmaster notice, any other true value a bounce (for
        internal_mail_filter_classes)."""
        return CleanupJob(self, sender, attrs, local_submit, flags, requeue, internal)


@dataclass
class Requeue:
    """What a message fed again from the queue (postsuper -r) keeps of its old file."""

    arrival: float  # the original arrival time, recorded again
    warn_time: float  # when its delay warning is due; 0: none (any more)
    uid: int  # the user who requeued it, named in the Received: header


class CleanupJob:
    """One message on its way into the queue; see the module docstring."""

    def __init__(
        self,
        cleanup: Cleanup,
        sender: str,
        attrs: dict,
        local_submit: bool,
        flags: int,
        requeue: Requeue | None = None,
        internal: bool = False,
    ) -> None:
        c = self.c = cleanup
        self.attrs = {k: str(v) for k, v in attrs.items() if v not in (None, "")}
        self.full_name = self.attrs.pop("full_name", "")
        # a comment line for Received: only (smtpd's "(Authenticated sender: ...)")
        self.received_comment = self.attrs.pop("received_comment", "")
        self.tls_trace = self.attrs.pop("tls_trace", "")  # Received: lines from smtpd
        # notices are inspected and filtered only as internal_mail_filter_classes says
        self.inspect = not internal or (
            c.inspect_notify if internal == "notify" else c.inspect_bounce
        )
        if c.content_filter and self.inspect and "filter" not in self.attrs:
            self.attrs["filter"] = c.content_filter  # a FILTER action overrides it
        self.local_submit = local_submit
        self.flags = flags
        self.requeue = requeue
        self.now = time.time()
        self.arrival = requeue.arrival if requeue else self.now
        self.recipients: list[Recipient] = []
        self.dups: set = set()
        self.rcpt_input = 0  # recipients as given, for Received: "for"
        # the Received: on top: RECEIVED_OURS (made at the end of the headers), or what
        # the milters left of the one they were shown (bytes; None: they deleted it)
        self.milter_received: object = RECEIVED_OURS
        self.first_rcpt = ""
        self.error: tuple[str, str] | None = None  # (action, reply)
        self.discard = False
        self.hold = False
        self.pass_checks = False
        self.envelope_written = False
        self.late_rcpts: list[Recipient] = []  # found after the envelope was written
        self.late_attrs: dict[str, str] = {}
        self.size = 0
        self.closed = False
        # headers
        self.parser = H.HeaderParser(c.header_limit)
        self.headers_out: list[bytes] = []
        self.seen: set[int] = set()
        self.hops = 0
        self.resent = False
        self.top_type: tuple[str, bytes | None] = ("", None)
        # body
        self.line_mode = False
        self.partial = b""
        self.mime: MimeStack | None = None
        self.part_parser = None
        self.part_kind = _PART_MULTIPART
        self.part_type: tuple[str, bytes | None] = ("", None)
        self.part_bytes = 0
        self.strict = c.strict.start(self._mime_error) if c.strict and not internal else None
        self.writer: QueueFileWriter | None = None
        self.signing = None  # cleanup.dkim_sign.SigningJob when a key signs this message
        self.message_id = ""  # the Message-ID: header's value, kept in the envelope
        self.seal_target: str | None = None  # a signed message is sealed in commit()
        self.pool: str | None = None  # egress_pool_header's name; None: no such header yet
        self.dkim_offsets: list[int] = []  # where its placeholder lines are in the file
        self.queue_id = "NOQUEUE"
        try:
            self.writer = QueueFileWriter(
                c.queue_dir,
                "incoming",
                hash_depth=c.hash_depth,
                hashed=c.hashed,
                line_limit=c.line_limit,
                when=self.now,
                arrival=self.arrival,
            )
            self.queue_id = self.writer.queue_id
        except OSError as exc:
            self._write_error(exc)
        if self.local_submit or c.local_clients.match(self.attrs):
            self.context: str | None = "local"
        elif c.remote_domain:
            self.context = "remote"
        else:
            self.context = None
        self.sender_in = sender
        self.sender = sender
        try:
            self.sender = c.addr.sender(sender)
        except MapRetry as exc:
            self._lookup_error(exc)
        self._check_verp()

    def _check_verp(self) -> None:
        """Keep the VERP delimiters only when they pass the filter and there is a sender."""
        delims = self.attrs.get(VERP_ATTR)
        if delims is None:
            return
        if not self.sender:
            log.warning("%s: ignoring VERP request for null sender", self.queue_id)
        elif delimiters_problem(delims, self.c.verp_filter):
            log.warning('%s: ignoring bad VERP request: "%.100s"', self.queue_id, delims)
        else:
            return
        del self.attrs[VERP_ATTR]

    def change_sender(self, sender: str) -> None:
        """Replace the envelope sender before any content came (a milter's CHGFROM)."""
        if self.size or self.envelope_written:
            raise RuntimeError("sender change after content")
        self.sender_in = self.sender = sender
        try:
            self.sender = self.c.addr.sender(sender)
        except MapRetry as exc:
            self._lookup_error(exc)
        self._check_verp()

    # ---- errors and logging

    def _fail(self, action: str, reply: str) -> None:
        if self.error is None:
            self.error = (action, reply)

    def _write_error(self, exc: OSError) -> None:
        log.warning("%s: queue file write error: %s", self.queue_id, exc.strerror or exc)
        self._fail(ACTION_DEFERRED, REPLY_WRITE_ERROR)

    def _lookup_error(self, exc: Exception) -> None:
        log.warning("%s: table lookup problem: %s", self.queue_id, exc)
        self._fail(ACTION_DEFERRED, REPLY_LOOKUP_ERROR)

    def _mime_error(self, detail: str, line: bytes) -> None:
        """Log a strict MIME check's finding as Postfix's cleanup does."""
        addr = self.attrs.get("client_address", "")
        client = f"{self.attrs.get('client_name') or 'unknown'}[{addr}]" if addr else "local"
        log.info(
            "%s: reject: mime-error %s: %s from %s; from=<%s> to=<%s>",
            self.queue_id,
            detail.partition(" ")[2],
            line[:100].decode("utf-8", "replace"),
            client,
            self.sender_in,
            self.first_rcpt or "unknown",
        )

    @property
    def stopped(self) -> bool:
        return self.error is not None or self.discard or self.closed

    def _log_action(self, what: str, where: str, line: bytes, text: str) -> None:
        addr = self.attrs.get("client_address", "")
        client = f"{self.attrs.get('client_name') or 'unknown'}[{addr}]" if addr else "local"
        shown = line.decode("utf-8", "replace")[:200]
        parts = [
            f"{self.queue_id}: {what}: {where} {shown} from {client}; "
            f"from=<{self.sender_in}> to=<{self.first_rcpt}>"
        ]
        if self.attrs.get("protocol"):
            parts.append(f" proto={self.attrs['protocol']}")
        if self.attrs.get("helo_name"):
            parts.append(f" helo=<{self.attrs['helo_name']}>")
        if text:
            parts.append(f": {text}")
        log.info("%s", "".join(parts))

    # ---- recipients

    def _add_final(self, addr: str, orig: str, notify: int, dsn_orcpt: str) -> None:
        key = (addr, orig if self.c.keep_orig else "", notify, dsn_orcpt)
        if key in self.dups:
            return
        if len(self.dups) < self.c.dup_limit:
            self.dups.add(key)
        rcpt = Recipient(addr, orig if self.c.keep_orig else "", dsn_orcpt, notify)
        if self.envelope_written:
            self.late_rcpts.append(rcpt)  # for the extracted section, at close()
        self.recipients.append(rcpt)

    def _expand(self, addr: str, orig: str, notify: int, dsn_orcpt: str) -> None:
        try:
            for final in self.c.addr.expand_virtual(addr):
                self._add_final(final, orig, notify, dsn_orcpt)
        except ExpansionError as exc:
            log.warning("%s: %s -- message not accepted, try again later", self.queue_id, exc)
            self._fail(ACTION_DEFERRED, REPLY_ALIAS_ERROR)

    def add_bcc(self, addr: str) -> None:
        """Add a blind-copy recipient (NOTIFY=NEVER), aliases expanded."""
        try:
            self._expand(self.c.addr.recipient(addr), addr, R.DSN_NOTIFY_NEVER, "")
        except MapRetry as exc:
            self._lookup_error(exc)

    def add_recipient(
        self, addr: str, orig: str = "", notify: int = 0, dsn_orcpt: str = ""
    ) -> None:
        """Add an envelope recipient as received."""
        if self.closed:
            raise RuntimeError("recipient after close")
        self.rcpt_input += 1
        if self.rcpt_input == 1:
            self.first_rcpt = orig or addr
        try:
            mapped = self.c.addr.recipient(addr)
            self._expand(mapped, orig or addr, notify, dsn_orcpt)
            bcc = self.c.addr.recipient_bcc(mapped)
        except MapRetry as exc:
            self._lookup_error(exc)
            return
        if bcc:
            self._expand(bcc, bcc, R.DSN_NOTIFY_NEVER, "")

    def copy_message(self, msg, path: str, data: bytes | None = None) -> None:
        """Take the recipients not yet done and the content of a queue file
        (pickup's maildrop files, postsuper -r); QueueFileError when damaged."""
        for rcpt in msg.recipients:
            if not rcpt.done:
                self.add_recipient(
                    rcpt.address,
                    orig=rcpt.orig or rcpt.address,
                    notify=rcpt.notify,
                    dsn_orcpt=rcpt.dsn_orcpt,
                )
        chunk: list[bytes] = []
        size = 0
        for line in iter_content(path, msg, data):
            chunk.append(line)
            size += len(line) + 1
            if size >= COPY_CHUNK:
                self.write(b"\n".join(chunk) + b"\n")
                chunk, size = [], 0
        if chunk:
            self.write(b"\n".join(chunk) + b"\n")

    # ---- content

    def write(self, chunk: bytes) -> None:
        """Take message content: lines end in LF or CRLF, chunks cut anywhere."""
        if self.closed:
            raise RuntimeError("write after close")
        if not chunk:
            return
        self.size += len(chunk)
        if self.c.size_limit and self.size > self.c.size_limit:
            self._fail(ACTION_REJECTED, REPLY_TOO_BIG)
        if self.stopped:
            return
        chunk = bytes(chunk)
        if not (self.flags & R.QF_8BIT) and not chunk.isascii():
            self.flags |= R.QF_8BIT
        try:
            if not self.parser.done:
                for name, raw, hid in self.parser.feed(chunk):
                    self._primary_header(name, raw, hid)
                if not self.parser.done:
                    return
                rest = self.parser.rest
                self._end_headers(True)
                chunk = rest
            if chunk and not self.stopped:
                self._body(chunk)
        except MapRetry as exc:
            self._lookup_error(exc)
        except OSError as exc:
            self._write_error(exc)

    # ---- header section

    def _check(self, table: str, line: bytes) -> Action:
        if self.pass_checks or not self.inspect or not self.c.checks.has(table):
            return NO_ACTION
        return self.c.checks.lookup(table, line)

    def _act(self, act: Action, where: str, line: bytes) -> tuple[bool, list[bytes], bytes | None]:
        """Carry out a check action: (keep the line, lines to prepend, replacement)."""
        verb, text = act.verb, act.text
        if not verb or verb in ("OK", "DUNNO"):
            return True, [], None
        if verb == "REJECT":
            reply = reject_text(text)
            self._log_action("reject", where, line, reply)
            self._fail(ACTION_REJECTED, reply)
            return False, [], None
        if verb == "DISCARD":
            self._log_action("discard", where, line, text)
            self.discard = True
            return False, [], None
        if verb == "HOLD":
            self._log_action("hold", where, line, text)
            self.hold = True
        elif verb == "REDIRECT":
            self._log_action("redirect", where, line, text)
            self._set_route("redirect", text)
        elif verb == "FILTER":
            self._log_action("filter", where, line, text)
            self._set_route("filter", text)
        elif verb == "WARN":
            self._log_action("warning", where, line, text)
        elif verb == "INFO":
            self._log_action("info", where, line, text)
        elif verb == "PASS":
            self._log_action("pass", where, line, text)
            self.pass_checks = True
        elif verb == "BCC":
            if text:
                self.add_bcc(text)
        elif verb == "IGNORE":
            return False, [], None
        elif verb == "STRIP":
            self._log_action("strip", where, line, text)
            return False, [], None
        elif verb == "PREPEND":
            return True, [text.encode("utf-8", "surrogateescape")], None
        elif verb == "REPLACE":
            return True, [], text.encode("utf-8", "surrogateescape")
        return True, [], None

    def _set_route(self, name: str, value: str) -> None:
        if name == "redirect":
            value = self.c.rewriter.rewrite(value, "local")
        if self.envelope_written:
            self.late_attrs[name] = value  # for the extracted section, at close()
        else:
            self.attrs[name] = value

    def _primary_header(self, name: bytes, raw: bytes, hid: int) -> None:
        if self.stopped:
            return
        if name == self.c.pool_header and name:
            self._take_pool(raw)
            return
        if self.strict is not None:
            self.strict.header(hid, raw)
        table = "mime_header_checks" if is_mime_header(name) else "header_checks"
        keep, prepend, replacement = self._act(
            self._check(table, H.unfold(raw)), "header", H.unfold(raw)
        )
        self.headers_out += prepend
        if not keep or self.stopped:
            return
        if replacement is not None:
            raw = replacement
            namelen = H.is_header(raw)
            name = raw[:namelen].lower() if namelen else b""
            hid = H.header_id(name)
        self._account_header(name, raw, hid)

    def _take_pool(self, raw: bytes) -> None:
        """egress_pool_header: the first one names the pool; every one is removed."""
        if self.pool is not None:
            return
        value = H.unfold(raw[raw.find(b":") + 1 :]).strip().lower()
        self.pool = value.decode("ascii") if POOL_NAME_RE.match(value) else ""
        if not self.pool:
            log.warning(
                "%s: %s: not a pool name, ignored", self.queue_id, self.c.pool_header.decode()
            )

    def _account_header(self, name: bytes, raw: bytes, hid: int) -> None:
        """Track, rewrite and keep (or drop) one primary header."""
        if hid == H.HDR_RETURN_PATH:
            return
        if hid in (H.HDR_RECEIVED, H.HDR_DELIVERED_TO):
            self.hops += 1
            if self.hops > self.c.hopcount_limit:
                log.warning("%s: too many hops", self.queue_id)
                self._fail(ACTION_REJECTED, REPLY_HOPS)
                return
        if hid in RESENT_HEADERS:
            self.resent = True
        if hid == H.HDR_CONTENT_TYPE:
            self.top_type = parse_content_type(raw[raw.find(b":") + 1 :])
        if hid in (H.HDR_MESSAGE_ID, H.HDR_RESENT_MESSAGE_ID):
            value = H.unfold(raw[raw.find(b":") + 1 :]).strip()
            label = "message-id" if hid == H.HDR_MESSAGE_ID else "resent-message-id"
            text = value.decode("utf-8", "replace")
            log.info("%s: %s=%s", self.queue_id, label, text)
            if hid == H.HDR_MESSAGE_ID and not self.message_id:
                self.message_id = text[:MESSAGE_ID_LIMIT]  # for the event log
        if hid:
            self.seen.add(hid)
        if hid in (H.HDR_BCC, H.HDR_RESENT_BCC) and self.local_submit:
            return
        klass = ADDRESS_HEADERS.get(hid)
        if klass is not None and self.context is not None:
            ctx = self.context

            def fix(addr: str, klass: str = klass, ctx: str = ctx) -> str:
                return self.c.addr.header_address(addr, klass, ctx)

            raw = rewrite_address_header(raw, fix, self.c.token_limit)
        self.headers_out.append(raw)

    def _missing_headers(self) -> list[bytes]:
        c = self.c
        if not (self.context == "local" or c.always_add):
            return []
        out = []
        resent = self.resent
        msgid = H.HDR_RESENT_MESSAGE_ID if resent else H.HDR_MESSAGE_ID
        if msgid not in self.seen:
            text = message_id_header(self.queue_id, c.myhostname, self.arrival, resent)
            if not resent:
                self.message_id = text.partition(": ")[2]
            log.info(
                "%s: %s=%s",
                self.queue_id,
                "resent-message-id" if resent else "message-id",
                text.partition(": ")[2],
            )
            out.append(text)
        if (H.HDR_RESENT_DATE if resent else H.HDR_DATE) not in self.seen:
            out.append(f"{'Resent-Date' if resent else 'Date'}: {mail_date(self.arrival)}")
        if (H.HDR_RESENT_FROM if resent else H.HDR_FROM) not in self.seen and self.sender:
            out.append(from_header(self.sender, self.full_name, c.from_format, resent))
        rcpt_headers = (
            (H.HDR_RESENT_TO, H.HDR_RESENT_CC, H.HDR_RESENT_BCC)
            if resent
            else (H.HDR_TO, H.HDR_CC, H.HDR_BCC)
        )
        if c.undisclosed and not any(h in self.seen for h in rcpt_headers):
            out.append(c.undisclosed)
        return [line.encode("utf-8", "surrogateescape") for line in out]

    def received_line(self, rcpt_for: str | None) -> bytes:
        """The Received: header this job puts on top (its lines joined with "\\n");
        rcpt_for: the "for" address (one recipient) or None."""
        c = self.c
        # a requeued message was received long ago: the new header says
        # who put it through cleanup again, and when
        trace = {"uid": str(self.requeue.uid)} if self.requeue else self.attrs
        return received_header(
            trace,
            self.queue_id,
            c.myhostname,
            c.mail_name,
            rcpt_for,
            self.now,
            ""
            if self.requeue
            else "\n".join(filter(None, (self.tls_trace, self.received_comment))),
        ).encode("utf-8", "surrogateescape")

    def _end_headers(self, body_follows: bool) -> None:
        """The header section is complete: write envelope and headers."""
        if self.stopped:
            return
        c = self.c
        try:
            bcc = c.addr.sender_bcc(self.sender) if self.sender else None
        except MapRetry as exc:
            self._lookup_error(exc)
            return
        if bcc:
            self._expand(bcc, bcc, R.DSN_NOTIFY_NEVER, "")
        if c.addr.always_bcc:
            self._expand(c.addr.always_bcc, c.addr.always_bcc, R.DSN_NOTIFY_NEVER, "")
        added = self._missing_headers()
        received = self.milter_received
        if received is RECEIVED_OURS:
            received = self.received_line(self.first_rcpt if self.rcpt_input == 1 else None)
        if self.writer is None or self.stopped:
            return
        lines = [received, *self.headers_out, *added] if received else [*self.headers_out, *added]
        if c.dkim.enabled:
            try:
                self.signing = c.dkim.start(self.queue_id, self.sender, lines, self.now)
                if self.signing is not None:
                    lines = self.signing.kept  # without our own signatures of an earlier pass
            except DkimError as exc:
                if c.dkim.failed(self.queue_id, exc):
                    self._fail(ACTION_DEFERRED, REPLY_DKIM_ERROR)
                    return
        attrs = {k: v for k, v in self.attrs.items()}
        if self.message_id:
            attrs["message_id"] = self.message_id  # the event log's message_id
        if self.pool:
            attrs["pool"] = self.pool  # the egress pool (mta/common/egress.py)
        if self.signing is not None:
            attrs["dkim_keys"] = ",".join(self.signing.names)  # for a client that signs again
        if self.requeue:
            warn = self.requeue.warn_time
        else:
            warn = self.arrival + c.delay_warning_time if c.delay_warning_time > 0 else 0
        self.writer.write_envelope(
            self.sender, self.recipients, attrs, self.full_name, 0, warn_time=warn
        )
        self.envelope_written = True
        if self.signing is not None:
            # the signature's place, above everything: filled in at finish()
            self.dkim_offsets = self.writer.reserve_lines(self.signing.placeholder_lines())
        self.headers_out = []
        data = b"\n".join(lines) + b"\n"
        if body_follows:
            data += b"\n"
        self.writer.write_content(data)
        self._start_body()

    # ---- body

    def _start_body(self) -> None:
        c = self.c
        kind, boundary = self.top_type
        mime = not c.mime_off and (
            (kind.startswith("multipart/") and boundary is not None) or kind == "message/rfc822"
        )
        need_mime_checks = c.checks.has("mime_header_checks") or c.checks.has(
            "nested_header_checks"
        )
        self.line_mode = (
            c.checks.has("body_checks") or (mime and need_mime_checks) or self.strict is not None
        )
        if self.strict is not None:
            self.strict.headers_done()
        if not self.line_mode:
            return
        if mime:
            self.mime = MimeStack(c.mime_limit)
            if kind.startswith("multipart/"):
                self.mime.push(boundary)
            else:
                self._open_part(_PART_NESTED)

    def _open_part(self, kind: str) -> None:
        self.part_parser = H.HeaderParser(self.c.header_limit)
        if self.strict is not None:
            self.strict.entity_start()
        self.part_kind = kind
        self.part_type = ("", None)
        self.part_bytes = 0

    def _write_body(self, data: bytes) -> None:
        """Body content into the queue file, and into the DKIM body hash."""
        self.writer.write_content(data)
        if self.signing is not None:
            self.signing.body(data)

    def _body(self, data: bytes) -> None:
        if not self.line_mode:
            self._write_body(data)
            return
        if self.partial:
            data = self.partial + data
            self.partial = b""
        lines = data.split(b"\n")
        self.partial = lines.pop()
        out: list[bytes] = []
        for line in lines:
            if line.endswith(b"\r"):
                line = line[:-1]
            self._body_line(line, out)
            if self.stopped:
                return
        if out:
            self._write_body(b"\n".join(out) + b"\n")

    def _part_header(self, name: bytes, raw: bytes, hid: int, out: list[bytes]) -> None:
        if self.strict is not None:
            self.strict.header(hid, raw)
        if is_mime_header(name):
            table = "mime_header_checks"
        else:
            table = "nested_header_checks"
        line = H.unfold(raw)
        keep, prepend, replacement = self._act(self._check(table, line), "header", line)
        out += prepend
        if not keep:
            return
        if replacement is not None:
            raw = replacement
        if hid == H.HDR_CONTENT_TYPE:
            self.part_type = parse_content_type(raw[raw.find(b":") + 1 :])
        out.append(raw)

    def _body_line(self, line: bytes, out: list[bytes]) -> None:
        if self.part_parser is not None:
            parser = self.part_parser
            for name, raw, hid in parser.feed_line(line):
                self._part_header(name, raw, hid, out)
            if not parser.done:
                return
            self.part_parser = None
            if self.strict is not None:
                self.strict.headers_done()
            kind, boundary = self.part_type
            if parser.blank:
                out.append(b"")
            if kind.startswith("multipart/") and boundary is not None:
                self.mime.push(boundary)
            elif kind == "message/rfc822":
                self._open_part(_PART_NESTED)
                if not parser.blank:
                    self._body_line(parser.rest, out)
                return
            if not parser.blank:
                self._body_line(parser.rest, out)
            return
        if self.mime is not None and line.startswith(b"--"):
            what = self.mime.boundary(line)
            if what != BOUNDARY_NONE:
                if not self._body_check(line, out):
                    return
                out.append(line)
                if what != BOUNDARY_CLOSE:
                    self._open_part(_PART_MULTIPART)
                else:
                    self.part_bytes = 0
                    if self.strict is not None:
                        self.strict.epilog()
                return
        if self.strict is not None:
            self.strict.body_line(line)
        if self._body_check(line, out):
            out.append(line)

    def _body_check(self, line: bytes, out: list[bytes]) -> bool:
        """Run body_checks on line; False when the line must not be written."""
        self.part_bytes += len(line) + 1
        if not line or self.part_bytes > self.c.checks.body_limit:
            return True
        act = self._check("body_checks", line)
        if not act.verb:
            return True
        keep, prepend, replacement = self._act(act, "body", line)
        out += prepend
        if replacement is not None:
            out.append(replacement)
            return False
        return keep

    # ---- the end

    def abort(self) -> None:
        """Throw the message away; safe to call more than once."""
        self.closed = True
        if self.writer is not None:
            self.writer.abort()
            self.writer = None

    def _result(self, action: str, reply: str = "") -> CleanupResult:
        return CleanupResult(
            action, self.queue_id, reply, self.hold, self.size, len(self.recipients)
        )

    def close(self, queue: str = "incoming") -> CleanupResult:
        """Finish the message; see the module docstring for the result."""
        result = self.finish(queue)
        return result if result is not None else self.commit()

    def finish(self, queue: str = "incoming") -> CleanupResult | None:
        """close() up to the fsync; a result when the message ends here.

        None means the queue file is written and only commit() is left:
        the part that waits for the disk, which an event loop runs on a
        thread while this part stays on the loop."""
        if self.closed:
            raise RuntimeError("job already closed")
        try:
            if not self.stopped and not self.parser.done:
                for name, raw, hid in self.parser.finish():
                    self._primary_header(name, raw, hid)
                rest = self.parser.rest
                if rest:
                    self._end_headers(True)
                    if not self.stopped:
                        self._body(rest + b"\n")
                else:
                    self._end_headers(False)
            elif not self.stopped and self.partial:
                self._body(b"\n")
        except MapRetry as exc:
            self._lookup_error(exc)
        except OSError as exc:
            self._write_error(exc)
        if self.strict is not None and self.strict.error is not None:
            self._fail(ACTION_REJECTED, self.strict.error)  # after any other refusal
        if self.error is None and not self.discard and not self.recipients:
            self._fail(ACTION_REJECTED, REPLY_NO_RCPT)
        if self.error is not None:
            self.abort()
            return self._result(*self.error)
        if self.discard:
            self.abort()
            return self._result(ACTION_DISCARDED)
        writer = self.writer
        target = "hold" if (self.hold or queue == "hold") else queue
        self.hold = target == "hold"
        try:
            for rcpt in self.late_rcpts:
                writer.add_recipient(rcpt)
            for name, value in self.late_attrs.items():
                writer.add_attr(name, value)
            writer.flags |= self.flags
            if self.signing is not None:
                # the signature and the seal wait for commit(): an event loop runs
                # it on a thread, where RSA signing does not hold the loop (nor the GIL)
                self.seal_target = target
                return None
            writer.seal(target)
        except OSError as exc:
            self._write_error(exc)
            self.abort()
            return self._result(*self.error)
        return None

    def _sign(self, writer: QueueFileWriter) -> None:
        """Put the DKIM signatures in place of their placeholders."""
        try:
            lines = self.signing.signed_lines()
        except (DkimError, ValueError) as exc:
            # the placeholder is in the file already: never send it, whatever
            # dkim_failure_action says (that is for keys that cannot be read)
            log.warning("%s: DKIM signing failed, message deferred: %s", self.queue_id, exc)
            self._fail(ACTION_DEFERRED, REPLY_DKIM_ERROR)
            return
        for offset, line in zip(self.dkim_offsets, lines, strict=True):
            writer.patch(offset, line)

    def commit(self) -> CleanupResult:
        """After finish() said None: sign a message DKIM keys sign, seal, fsync and
        rename into place (blocks: an event loop runs it on a thread)."""
        writer = self.writer
        try:
            if self.seal_target is not None:
                self._sign(writer)
                if self.error is not None:
                    self.abort()
                    return self._result(*self.error)
                writer.seal(self.seal_target)
            writer.sync()
        except OSError as exc:
            self._write_error(exc)
            self.abort()
            return self._result(*self.error)
        self.closed = True
        self.writer = None
        size = writer.content_size
        if writer.queue == "incoming":
            self.c.qmgr_kicker.kick()
        result = self._result(ACTION_QUEUED)
        result.size = size
        return result
