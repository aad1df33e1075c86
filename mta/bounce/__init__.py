"""mta.bounce - per-message outcome logs and the notices built from them

SYNOPSIS
    from mta.bounce import logfile        # bounce/, defer/, trace/ logs
    from mta.bounce.notice import make_notice

DESCRIPTION
    Delivery agents append each recipient's outcome to the message's
    log in bounce/, defer/ or trace/ (logfile.py) before marking it done;
    qmgr turns a bounce log into a non-delivery notice to the sender
    (notice.py) once every recipient of the message is finished.

SECURITY
    Reasons in the logs come from remote servers; they are kept as text.
"""
