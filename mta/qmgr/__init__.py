"""mta.qmgr - the queue manager

SYNOPSIS
    master.cf:  qmgr  fifo  n  -  n  300  1  qmgr
    from mta.qmgr.manager import QueueManager

DESCRIPTION
    One long-running process per instance that moves mail from
    incoming/ (and, when its retry time comes, deferred/) into a bounded
    active window, hands batches of recipients to the delivery agents
    under per-transport and per-destination limits, and removes,
    defers, expires or bounces each message when its batches are back
    (manager.py). Triggers arrive on public/qmgr: "I" new mail, "D" scan
    deferred, "A" both, "F" flush (deferred mail is due now), "W" the
    master's wakeup. scan.py walks queue directories; settings.py reads
    the per-transport limits; kernel.py binds the scheduler kernel.

SECURITY
    Runs unprivileged as mail_owner; never reads message content.
"""
