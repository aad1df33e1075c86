"""mta.master - the supervisor that runs every service of master.cf

SYNOPSIS
    python -m mta.master -c CONFIG_DIR [-f] [-v]     # normally via "mta start"
    from mta.master.multi_server import run_multi_server
    from mta.master.trigger_server import run_trigger_server

DESCRIPTION
    The master side: master.py (main loop, signals, reload, stop),
    listen.py (opens the listeners), spawn.py (starts a child with its
    listeners and status pipe), supervise.py (per-service process
    accounting and throttling), registry.py (master.cf command to Python
    module), privs.py (dropping root), pidfile.py (master.pid lock).

    The service side: mail_server.py (child argv, configuration and
    context), multi_server.py (many clients per process) and
    trigger_server.py (wakeup triggers).

SECURITY
    The master may run as root: it opens the listeners and starts the
    children, and runs no untrusted input itself. Children drop to
    mail_owner when master.cf marks them unprivileged.

SEE ALSO
    Postfix's master(8), master(5)
"""
