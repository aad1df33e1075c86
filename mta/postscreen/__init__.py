"""postscreen - screen SMTP clients before smtpd sees them (see mta/postscreen/server.py)."""
