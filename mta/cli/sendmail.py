"""cli.sendmail - the Sendmail-compatible submission command

SYNOPSIS
    sendmail [-t] [-i | -oi] [-G] [-f sender] [-F full_name] [-N dsn] [-R ret] [-V envid]
             [-XV[xy]] [-B body_type] [-C config_dir] [-bm] [recipient ...]
    sendmail -bs                   # SMTP conversation on standard input and output
    sendmail -bp | -bv | -bi | -I | -q[...]
    mailq, newaliases              # the same program under other names

DESCRIPTION
    Reads a message from standard input and queues it in maildrop/
    through mta.postdrop; pickup takes it from there when the mail
    system runs (it may be stopped meanwhile). Without -i (or -oi) a
    line with only "." ends the message, as Sendmail does. -t takes
    recipients from the To:, Cc: and Bcc: headers (Resent-To: and the
    like when the message has Resent- headers) in addition to those on
    the command line, and removes Bcc:. -f sets the envelope sender
    (default: the login name), -F the full name. -N, -R and -V set the
    DSN NOTIFY, RET and ENVID of RFC 3461. -bs speaks SMTP on standard
    input and output and queues each message the same way. Options
    Sendmail takes and Postfix ignores (-o*, -h, -L, -n, -U, -m, -x, and
    -X other than -XV) are ignored here too.

    -XV asks for VERP delivery (mta/common/verp.py): each recipient gets
    a copy whose envelope sender encodes it, owner-list+user=domain@origin
    for -f owner-list@origin, with default_verp_delimiters; -XVxy gives
    the two delimiters, which must be in verp_delimiter_filter (else exit
    64, "-V requires two characters from -=+"). Postfix 2.2's forms are
    still understood, with a warning: -Vxy, and a bare -V when the next
    word has two characters (-V -f owner-list); any other -V takes an
    ENVID. VERP needs a sender: -f "<>" with -XV exits 64.

    -G marks a gateway (relay) submission, as a content filter that
    reinjects mail makes: pickup hands it to cleanup as remote mail,
    whose headers get the remote rewriting rules (or none when
    remote_header_rewrite_domain is empty), not those of local mail.

    -v asks for a report of the first delivery attempt by mail (a
    "Mail Delivery Status Report" to the sender, as Postfix sends).

    -bv reads no message: it queues an empty one, flagged so that the
    delivery agents only find out what would happen to each recipient
    (the smtp client stops after RCPT TO; local looks up aliases and
    users), and the sender gets a "Mail Delivery Status Report" with
    the result for each recipient. Nothing is delivered.

    -q asks the queue manager to try all deferred mail now (69 when the
    mail system is down); -qRsite only the mail for site (mta queue -s);
    -qIqueue_id one message (mta queue -i). -qSsite is not implemented,
    as in Postfix: it says so and exits 69 (EX_UNAVAILABLE).
    -bp and the name mailq print the queue listing (mta queue). Under
    the name mailq only -C config_dir and -v are accepted; any other
    option is refused with the usage line and exit status 64, as
    postqueue refuses what it does not know.
    -bi, -I and the name newaliases build every table of alias_database
    (mta alias, postalias) and exit with its status.

    A user who is not on authorized_submit_users may not submit mail
    (the -bm, -t, -bs and -bv modes), one not on authorized_flush_users
    may not use -q, one not on authorized_mailq_users may not list the
    queue (root and mail_owner always may): "sendmail: fatal: User
    NAME(UID) is not allowed to submit mail" and exit status 77.

    Exit status follows sysexits.h: 0 queued, 64 usage, 65 bad message
    data, 69 unavailable, 73 cannot create the queue file, 75 temporary
    failure, 77 not allowed, 78 configuration error.

SECURITY
    Runs as the invoking user; reads untrusted input and writes only a
    new file in maildrop/.
"""

from __future__ import annotations

import os
import pwd
import sys

from mta.common.user_acl import FLUSH_ACL, SUBMIT_ACL, AccessDenied, check_user
from mta.common.verp import VERP_ATTR, delimiters_problem
from mta.config import ConfigError, load_config
from mta.queue import rec_type as R
from mta.trivial_rewrite.address import parse_addr_list

EX_OK, EX_USAGE, EX_DATAERR, EX_UNAVAILABLE = 0, 64, 65, 69
EX_CANTCREAT, EX_TEMPFAIL, EX_CONFIG = 73, 75, 78

# options that take a value, as the next word or glued to the letter
WITH_VALUE = set("fFNRVBCLhrX")
IGNORED = set("nmUx")

RECIPIENT_HEADERS = (b"to", b"cc", b"bcc")
VERIFY_MESSAGE = b"Subject: address verification\n\n"  # what sendmail -bv queues
RESENT_HEADERS = (b"resent-to", b"resent-cc", b"resent-bcc")

USAGE = (
    "usage: sendmail [-t] [-i] [-f sender] [-F name] [-N notify] [-R ret] [-V envid]\n"
    "                [-XV[xy]] [-C config_dir] [-bm | -bs | -bp | -bv | -bi] [recipient ...]\n"
)
MAILQ_USAGE = "usage: mailq [-C config_dir] [-v]\n"
MAILQ_OPTIONS = ("-bp", "-v")  # all mailq takes besides -C config_dir

NOTIFY_WORDS = {
    "never": R.DSN_NOTIFY_NEVER,
    "success": R.DSN_NOTIFY_SUCCESS,
    "failure": R.DSN_NOTIFY_FAILURE,
    "delay": R.DSN_NOTIFY_DELAY,
}


class UsageError(Exception):
    pass


def fail(status: int, text: str, prog: str = "sendmail") -> int:
    sys.stderr.write(f"{prog}: fatal: {text}\n")
    return status


def check_mailq_args(argv: list[str]) -> None:
    """mailq takes -C config_dir and -v only: UsageError names anything else."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "-C":
            i += 2
            continue
        if not (arg.startswith("-C") or arg in MAILQ_OPTIONS or arg in ("--help", "-?")):
            what = "invalid option" if arg.startswith("-") else "unexpected argument"
            raise UsageError(f"{what} {arg}")
        i += 1


def parse_args(argv: list[str]) -> tuple[dict, list[str]]:
    """Sendmail's option syntax: -fsender or -f sender, -oi, -bs, -qR..."""
    opts: dict = {"mode": "m", "t": False, "i": False, "q": None}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            i += 1
            break
        if arg in ("--help", "-?"):
            opts["mode"] = "help"
            i += 1
            continue
        if not arg.startswith("-") or arg == "-":
            break
        old_verp = old_verp_form(argv, i)
        if old_verp is not None:
            sys.stderr.write(
                f"sendmail: warning: {arg} asks for VERP in the old form; use -X{arg[1:]}\n"
            )
            opts["XV"] = old_verp
            i += 1
            continue
        letter, rest = arg[1], arg[2:]
        i += 1
        if letter in WITH_VALUE:
            if not rest:
                if i >= len(argv):
                    raise UsageError(f"option -{letter} requires an argument")
                rest = argv[i]
                i += 1
            if letter == "X" and rest.startswith("V"):
                opts["XV"] = rest[1:]  # VERP; "" for default_verp_delimiters
            else:
                opts[letter] = rest
        elif letter == "o":
            if rest == "i":
                opts["i"] = True
        elif letter == "b":
            if rest not in ("m", "s", "p", "v", "i", "d", "D", "a"):
                raise UsageError(f"unsupported option -b{rest}")
            opts["mode"] = rest
        elif letter == "q":
            opts["q"] = rest
        elif letter in "tiG" and not rest:
            opts[letter] = True
        elif letter == "v" and set(rest) <= {"v"}:
            opts["v"] = True  # a report of the first delivery attempt, by mail
        elif letter == "I" and not rest:
            opts["mode"] = "i"
        elif letter in IGNORED:
            pass
        else:
            raise UsageError(f"unsupported option {arg}")
    return opts, argv[i:]


def old_verp_form(argv: list[str], i: int) -> str | None:
    """Postfix 2.2's -V for VERP at argv[i]: the delimiters ("" for the default), or None.

    -Vxy is VERP with delimiters xy; a bare -V is VERP when the word
    after it has two characters (-f, -t ...); otherwise -V takes an ENVID."""
    arg = argv[i]
    if arg == "-V" and i + 1 < len(argv) and len(argv[i + 1]) == 2:
        return ""
    if arg.startswith("-V") and len(arg) == 4:
        return arg[2:]
    return None


def verp_delimiters(cfg, opts: dict) -> str | None:
    """The delimiters -XV asks for (None: no VERP); UsageError when the filter refuses them."""
    if "XV" not in opts:
        return None
    delims = opts["XV"] or cfg.get("default_verp_delimiters")
    allowed = cfg.get("verp_delimiter_filter")
    if delimiters_problem(delims, allowed):
        raise UsageError(f"-V requires two characters from {allowed}")
    return delims


def read_message(stream, dot_ends: bool) -> bytes:
    """Read the message; without -i a line holding only "." ends it."""
    if not dot_ends:
        return stream.read()
    out = []
    for line in stream:
        if line.rstrip(b"\r\n") == b".":
            break
        out.append(line)
    return b"".join(out)


def split_header_block(data: bytes) -> tuple[list[bytes], bytes]:
    """Return (header lines with their continuations joined, rest of message)."""
    lines = data.splitlines(keepends=True)
    headers: list[bytes] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line in (b"\n", b"\r\n"):
            break
        if line[:1] in (b" ", b"\t") and headers:
            headers[-1] += line
        elif b":" in line.split(b"\n")[0] and not line[:1].isspace():
            headers.append(line)
        else:
            break
        i += 1
    return headers, b"".join(lines[i:])


def header_name(header: bytes) -> bytes:
    return header.split(b":", 1)[0].strip().lower()


def extract_recipients(data: bytes) -> tuple[list[str], bytes]:
    """-t: recipients from the headers, and the message with Bcc: removed."""
    headers, rest = split_header_block(data)
    names = {header_name(h) for h in headers}
    wanted = RESENT_HEADERS if names & set(RESENT_HEADERS) else RECIPIENT_HEADERS
    addrs = [
        addr
        for h in headers
        if header_name(h) in wanted
        for addr in parse_addr_list(h.split(b":", 1)[1])
    ]
    kept = [h for h in headers if header_name(h) not in (b"bcc", b"resent-bcc")]
    return addrs, b"".join(kept) + rest


def parse_notify(text: str) -> int:
    bits = 0
    for word in text.lower().split(","):
        if word not in NOTIFY_WORDS:
            raise UsageError(f"bad -N value: {text}")
        bits |= NOTIFY_WORDS[word]
    if bits & R.DSN_NOTIFY_NEVER and bits != R.DSN_NOTIFY_NEVER:
        raise UsageError(f"bad -N value: {text}")
    return bits


def login_name() -> tuple[str, str]:
    try:
        pw = pwd.getpwuid(os.getuid())
    except KeyError:
        return str(os.getuid()), ""
    return pw.pw_name, pw.pw_gecos.split(",")[0]


def submit(cfg, opts: dict, recipients: list[str], data: bytes) -> int:
    from mta.postdrop import MaildropSubmitter

    user, gecos = login_name()
    sender = opts.get("f", user)
    if sender == "<>":
        sender = ""
    full_name = opts.get("F", gecos)
    notify = parse_notify(opts["N"]) if "N" in opts else 0
    if opts["t"]:
        extracted, data = extract_recipients(data)
        recipients = recipients + extracted
    if not recipients:
        return fail(
            EX_USAGE, "no recipient addresses found" + (" in message header" if opts["t"] else "")
        )
    limit = cfg.get_size("message_size_limit")
    if limit and len(data) > limit:
        return fail(EX_DATAERR, f"message file too big (limit: {limit} bytes)")
    attrs = {}
    if opts.get("G"):
        attrs["rewrite_context"] = "remote"  # -G: a gateway (relay) submission
    if "R" in opts:
        attrs["ret"] = opts["R"].upper()
    if "V" in opts:
        attrs["envid"] = opts["V"]
    verp = verp_delimiters(cfg, opts)
    if verp:
        if not sender:
            uid = os.getuid()
            return fail(EX_USAGE, f"{sender}({uid}): -V option requires non-null sender address")
        attrs[VERP_ATTR] = verp
    flags = R.QF_8BIT if opts.get("B", "").upper() == "8BITMIME" else 0
    if opts.get("v"):
        flags |= R.QF_TRACE
    if opts["mode"] == "v":
        flags |= R.QF_TRACE | R.QF_VERIFY_USER
    submitter = MaildropSubmitter(cfg)
    job = submitter.open(sender, attrs, flags=flags, full_name=full_name)
    try:
        for rcpt in recipients:
            job.add_recipient(rcpt, notify=notify)
        job.write(data)
        job.close()
    except OSError as exc:
        job.abort()
        where = os.path.join(submitter.queue_dir, "maildrop")
        status = EX_TEMPFAIL if exc.errno in (28, 122) else EX_CANTCREAT  # ENOSPC, EDQUOT
        return fail(status, f"{where}: cannot queue the message: {exc.strerror}")
    return EX_OK


def run_smtp_on_stdio(cfg) -> int:
    """-bs: an smtpd session on standard input and output."""
    from mta.smtpd.stdio import serve_stdio

    return serve_stdio(cfg)


def flush_deferred(opts: dict) -> int:
    """-q: deliver the deferred queue now; -qRsite: only site's mail."""
    if opts["q"][:1] == "S":
        return fail(EX_UNAVAILABLE, 'sendmail -qS is not implemented; use "sendmail -q"')
    from mta.cli.postfix import flush_queue

    try:
        cfg = load_config(opts.get("C"))
        check_user(cfg, FLUSH_ACL)
    except ConfigError as exc:
        return fail(EX_CONFIG, str(exc))
    except AccessDenied as exc:
        return fail(exc.status, str(exc))
    if opts["q"][:1] in ("R", "I"):
        from mta.cli.queue import flush_one, flush_one_site

        run = flush_one_site if opts["q"][:1] == "R" else flush_one
        status, text = run(cfg, opts["q"][1:])
        return fail(status, text) if status else EX_OK
    if not flush_queue(cfg):
        return fail(EX_UNAVAILABLE, "cannot flush the mail queue: the mail system is down")
    return EX_OK


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    prog = os.path.basename(prog or sys.argv[0] or "sendmail")
    try:
        if prog == "mailq":
            check_mailq_args(argv)
        opts, recipients = parse_args(argv)
    except UsageError as exc:
        who, usage = ("mailq", MAILQ_USAGE) if prog == "mailq" else ("sendmail", USAGE)
        return fail(EX_USAGE, f"{exc}\n{usage.rstrip()}", who)
    if opts["mode"] == "help":
        sys.stdout.write(USAGE + __doc__.split("DESCRIPTION", 1)[1].split("SECURITY")[0])
        return EX_OK
    if prog == "mailq":
        opts["mode"] = "p"
    elif prog == "newaliases":
        opts["mode"] = "i"
    if opts["q"] is not None:
        return flush_deferred(opts)
    if opts["mode"] == "p":
        from mta.cli.queue import show_queue

        try:
            return show_queue(load_config(opts.get("C")), False, prog)
        except ConfigError as exc:
            return fail(EX_CONFIG, str(exc))
    if opts["mode"] == "i":
        from mta.cli.alias import newaliases

        return newaliases(opts.get("C"))
    if opts["mode"] in ("d", "D", "a"):
        return fail(EX_USAGE, f"-b{opts['mode']} is not supported; use mta start")
    try:
        cfg = load_config(opts.get("C"))
        check_user(cfg, SUBMIT_ACL)
        if opts["mode"] == "s":
            return run_smtp_on_stdio(cfg)
        verp_delimiters(cfg, opts)  # refused before the message is read, as Postfix
        if opts["mode"] == "v":
            data = VERIFY_MESSAGE  # -bv collects no message
        else:
            data = read_message(sys.stdin.buffer, dot_ends=not opts["i"])
        return submit(cfg, opts, recipients, data)
    except ConfigError as exc:
        return fail(EX_CONFIG, str(exc))
    except AccessDenied as exc:
        return fail(exc.status, str(exc))
    except UsageError as exc:
        return fail(EX_USAGE, str(exc))


def entry() -> None:
    """Console-script entry point for sendmail, mailq and newaliases."""
    sys.exit(main())


if __name__ == "__main__":
    entry()
