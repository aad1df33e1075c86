"""mta.milter - Sendmail milter protocol (version 6), the MTA side

SYNOPSIS
    from mta.milter.settings import MilterSettings, parse_milters
    from mta.milter.chain import MilterChain
    from mta.milter.job import MilterJob

DESCRIPTION
    What Postfix's smtpd_milters and non_smtpd_milters do: every
    configured milter (OpenDKIM, rspamd, ClamAV, ...) sees the SMTP
    events of a session and the message, may refuse at any stage, and
    may edit the message at its end.

        protocol.py   packets, SMFIC_*/SMFIR_* codecs, OPTNEG, bounded decoder
        settings.py   milter lists and milter_* parameters
        client.py     one milter connection: negotiation, events, timeouts,
                      default_action when the milter fails
        chain.py      the milters in order, their replies as one decision
        message.py    the held message and the header/body/envelope edits
        job.py        a cleanup job whose content waits for the milters
        local.py      non_smtpd_milters for mail from pickup

    smtpd's side is mta/smtpd/milters.py.

SECURITY
    Milters are trusted by configuration but their replies are parsed
    with bounds; see each module.

SEE ALSO
    postconf(5) milter_*, smtpd_milters, non_smtpd_milters; MILTER_README
"""
