"""queue.rec_type - the record types of a queue file

SYNOPSIS
    from mta.queue import rec_type as R
    R.REC_TYPE_RCPT        # ord("R")

DESCRIPTION
    A queue file is, in order: a size record, the envelope (arrival time,
    attributes, sender, recipients with their DSN details), the message
    content (one record per line), the extracted section (recipients
    found after the content, for instance by "sendmail -t"), and an end
    record. The letters follow Postfix where the meaning is the same.
    A done recipient is a recipient record whose type byte was
    overwritten in place with REC_TYPE_DONE.

SECURITY
    Constants only.
"""

REC_TYPE_SIZE = ord("C")  # sizes: content offset, content size, recipients, flags
REC_TYPE_TIME = ord("T")  # arrival time: "seconds microseconds"
REC_TYPE_ATTR = ord("A")  # one envelope attribute: "name=value"
REC_TYPE_FULL = ord("F")  # sender's full name (sendmail -F)
REC_TYPE_FROM = ord("S")  # envelope sender; empty for the null sender
REC_TYPE_ORCP = ord("O")  # the recipient as first received, before rewriting
REC_TYPE_DSN_ORCPT = ord("o")  # DSN ORCPT parameter of the next recipient
REC_TYPE_DSN_NOTIFY = ord("n")  # DSN NOTIFY bits of the next recipient
REC_TYPE_RCPT = ord("R")  # a recipient still to deliver
REC_TYPE_DONE = ord("D")  # a recipient delivered, bounced or otherwise finished
REC_TYPE_WARN = ord("W")  # time of the next delay warning
REC_TYPE_MESG = ord("M")  # start of the message content
REC_TYPE_NORM = ord("N")  # a content line without its line end
REC_TYPE_CONT = ord("L")  # a piece of a long content line; more of it follows
REC_TYPE_XTRA = ord("X")  # end of the content, start of the extracted section
REC_TYPE_END = ord("E")  # end of the queue file

# DSN NOTIFY bits, stored as a decimal number in REC_TYPE_DSN_NOTIFY
DSN_NOTIFY_NEVER = 1  # NOTIFY=NEVER
DSN_NOTIFY_SUCCESS = 2  # NOTIFY=SUCCESS
DSN_NOTIFY_FAILURE = 4  # NOTIFY=FAILURE
DSN_NOTIFY_DELAY = 8  # NOTIFY=DELAY

# flags in the size record
QF_8BIT = 1  # the content has 8-bit data (BODY=8BITMIME or found so)
QF_SMTPUTF8 = 2  # the envelope or headers need SMTPUTF8
QF_TRACE = 4  # sendmail -v: mail the sender a report of the first delivery attempt
QF_VERIFY_MTA = 8  # an address probe from the verify service: find out, never deliver
QF_VERIFY_USER = 16  # sendmail -bv: find out, never deliver, report to the sender
QF_VERIFY = QF_VERIFY_MTA | QF_VERIFY_USER  # either kind of verification

SIZE_FIELD_WIDTH = 15  # each size record field is this wide, so it can be rewritten in place
