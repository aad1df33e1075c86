"""python -m mta.smtpd - the SMTP server service, as the master starts it."""

from mta.smtpd.server import main

main()
