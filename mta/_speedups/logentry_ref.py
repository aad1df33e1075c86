"""logentry_ref - per-message log entries, reference version; the spec for logentry.pyx

SYNOPSIS
    from mta._speedups.logentry_ref import latest_reasons
    reasons = latest_reasons(log_bytes)        # {recipient offset: reason}

DESCRIPTION
    A bounce, defer or trace log (mta/bounce/logfile.py) is a sequence
    of entries, each a block of "name=value" lines ended by an empty
    line. latest_reasons() gives, for each recipient offset, the reason
    of the last entry about it, as the queue listing shows it.

    The bytes are read as UTF-8 with surrogateescape. Blocks are what
    lies between "\n\n" separators, with "\n" stripped from both ends;
    an empty block is passed over. An entry counts when every line has
    an "=", it names recipient, offset, action and status, its offset
    is a number and its notify (when given and not empty) too, as
    int() reads them, and its action is one of LOG_ACTIONS; a later
    line with the same name wins. Entries that do not count are passed
    over silently (a log is advice, not the message). The reason is ""
    when the entry has none.

SECURITY
    Reasons come from remote servers; they are returned as text and
    never interpreted. A damaged log gives fewer reasons, never an error.
"""

LOG_ACTIONS = frozenset({"delivered", "relayed", "expanded", "delayed", "failed"})  # DSN actions


def latest_reasons(data):
    """{recipient offset: reason of its last entry} of the log data (bytes)."""
    reasons = {}
    for block in bytes(data).decode("utf-8", "surrogateescape").split("\n\n"):
        block = block.strip("\n")
        if not block:
            continue
        fields = {}
        for line in block.split("\n"):
            name, eq, value = line.partition("=")
            if not eq:
                break
            fields[name] = value
        else:
            if not {"recipient", "offset", "action", "status"} <= fields.keys():
                continue
            if fields["action"] not in LOG_ACTIONS:
                continue
            try:
                offset = int(fields["offset"])
                int(fields.get("notify", "0") or 0)
            except ValueError:
                continue
            reasons[offset] = fields.get("reason", "")
    return reasons
