"""config.instance - the embedded default instance

SYNOPSIS
    from mta.config.instance import instance_dir, ensure_instance
    config_dir = ensure_instance()       # creates it on first use

DESCRIPTION
    With neither -c nor MTA_CONFIG_DIR, every command uses one instance
    directory that holds everything: main.cf and master.cf, the spool
    (spool/), service data (data/), local mailboxes (mail/) and the log
    (maillog). It is $XDG_STATE_HOME/mta, or ~/.local/state/mta when
    XDG_STATE_HOME is unset. The generated configuration runs as the
    invoking user, listens on 127.0.0.1 only (smtpd on port 2525) and
    trusts only loopback clients, so it relays for nobody else; QMQP is
    on port 6280 for loopback clients, and sendmail's mail is picked up
    from the maildrop queue. qmgr delivers through the smtp, lmtp,
    local, virtual, discard and error agents; local mailboxes are
    files under mail/. showq (public/showq) lists the queue for mailq;
    verify answers reject_unverified_* and sends their probes.

    Mail for the invoking user is local under the names a newcomer
    types: USER@localhost, USER@localhost.$mydomain, USER@$myhostname
    and, when the host name is not fully qualified, USER@HOSTNAME
    (mydestination); local_recipient_maps keeps its default (the
    password file and alias_maps), so other local parts get 550 5.1.1.
    The instance's aliases file sends postmaster, root, MAILER-DAEMON
    and abuse to the user; alias_maps and alias_database name it, and it
    is built into aliases.lmdb on first use ("newaliases" rebuilds it).

    A master.cf or main.cf that an earlier version generated and nobody
    edited is replaced by the current one (master.cf gains qmgr and the
    delivery agents, then showq and verify; main.cf the aliases and the
    short host name); an edited one is left alone.

SECURITY
    Creates files as the invoking user, mode 0700 for the directory.
"""

from __future__ import annotations

import os
import pwd
import socket

from mta.config.errors import ConfigError
from mta.config.main_cf import write_atomically

SMTP_PORT = 2525  # smtpd of the embedded instance, on 127.0.0.1
QMQP_PORT = 6280  # qmqpd of the embedded instance (Postfix's 628 needs root)
INSTANCE_ALIASES = ("postmaster", "root", "MAILER-DAEMON", "abuse")  # all go to the user


def instance_dir() -> str:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state"
    )
    return os.path.join(os.path.abspath(base), "mta")


def _user() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


def _short_hostname() -> str:
    """The host name as "hostname" prints it, when it is not a fully qualified one."""
    name = socket.gethostname().lower()
    return name if name and "." not in name else ""


def main_cf_text(top: str) -> str:
    short = _short_hostname()
    return f"""\
# mta embedded default instance, generated on first use.
# Edit with "mta conf -e name=value"; see "mta conf -d" for every default.
queue_directory = {top}/spool
data_directory = {top}/data
mail_spool_directory = {top}/mail
maillog_file = {top}/maillog
mail_owner = {_user()}
inet_interfaces = loopback-only
mynetworks_style = host
mynetworks = 127.0.0.0/8 [::1]/128
relay_domains =
qmqpd_authorized_clients = 127.0.0.1
# local mail: you@localhost, you@localhost.$mydomain, you@$myhostname{", you@" + short if short else ""}
mydestination = $myhostname, localhost.$mydomain, localhost{", " + short if short else ""}
# postmaster, root, MAILER-DAEMON and abuse go to you; after editing, run "newaliases"
alias_maps = lmdb:{top}/aliases
alias_database = lmdb:{top}/aliases
"""


def aliases_text() -> str:
    user = _user()
    lines = [
        "# aliases(5) of the mta embedded instance: mail for these names goes to you.",
        '# After editing, run "newaliases" (or "mta alias FILE") to rebuild aliases.lmdb.',
    ]
    lines += [f"{name}: {user}" for name in INSTANCE_ALIASES if name != user]
    return "\n".join(lines) + "\n"


# main.cf as versions before the aliases file generated it: upgraded when untouched
def main_cf_text_0_3(top: str) -> str:
    return f"""\
# mta embedded default instance, generated on first use.
# Edit with "mta conf -e name=value"; see "mta conf -d" for every default.
queue_directory = {top}/spool
data_directory = {top}/data
mail_spool_directory = {top}/mail
maillog_file = {top}/maillog
mail_owner = {_user()}
inet_interfaces = loopback-only
mynetworks_style = host
mynetworks = 127.0.0.0/8 [::1]/128
relay_domains =
qmqpd_authorized_clients = 127.0.0.1
# no alias table until you build one with "mta alias"
alias_maps =
"""


MASTER_CF_TEXT = """\
# mta embedded default instance: services run by the master.
# ==========================================================================
# service type  private unpriv  chroot  wakeup  maxproc command + args
# ==========================================================================
127.0.0.1:{smtp} inet n   -       n       -       -       smtpd
127.0.0.1:{qmqp} inet n   -       n       -       -       qmqpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      fifo  n       -       n       300     1       qmgr
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
lmtp      unix  -       -       n       -       -       lmtp
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
discard   unix  -       -       n       -       -       discard
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
scache    unix  -       -       n       -       1       scache
showq     unix  n       -       n       -       -       showq
verify    unix  -       -       n       -       1       verify
anvil     unix  -       -       n       -       1       anvil
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
"""


# master.cf as versions before the delivery path generated it: an untouched
# copy is replaced by the current one, so an old instance starts delivering
MASTER_CF_TEXT_0_1 = """\
# mta embedded default instance: services run by the master.
# ==========================================================================
# service type  private unpriv  chroot  wakeup  maxproc command + args
# ==========================================================================
127.0.0.1:{smtp} inet n   -       n       -       -       smtpd
127.0.0.1:{qmqp} inet n   -       n       -       -       qmqpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
proxymap  unix  -       -       n       -       -       proxymap
"""


# master.cf as versions before the showq and verify services generated it
MASTER_CF_TEXT_0_2 = """\
# mta embedded default instance: services run by the master.
# ==========================================================================
# service type  private unpriv  chroot  wakeup  maxproc command + args
# ==========================================================================
127.0.0.1:{smtp} inet n   -       n       -       -       smtpd
127.0.0.1:{qmqp} inet n   -       n       -       -       qmqpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      fifo  n       -       n       300     1       qmgr
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
lmtp      unix  -       -       n       -       -       lmtp
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
discard   unix  -       -       n       -       -       discard
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
scache    unix  -       -       n       -       1       scache
"""

# master.cf as versions before the tlsmgr service and the submission entries
# (added below) generated it
MASTER_CF_TEXT_0_4 = MASTER_CF_TEXT.replace(
    "tlsmgr    unix  -       -       n       1000?   1       tlsmgr\n", ""
)

# master.cf as versions before the anvil service generated it
MASTER_CF_TEXT_0_3 = MASTER_CF_TEXT_0_4.replace(
    "anvil     unix  -       -       n       -       1       anvil\n", ""
)

# Mail submission for mail programs, commented out as in Postfix's master.cf:
# port 587 with STARTTLS required, port 465 with TLS from the first byte.
SUBMISSION_CF_TEXT = """\
# Mail submission for mail programs (Postfix's submission and submissions
# services); off until uncommented. They need a server certificate in main.cf
# (smtpd_tls_chain_files, or smtpd_tls_cert_file and smtpd_tls_key_file).
# Running unprivileged, this instance takes ports above 1024; as root, name
# the usual ones: 127.0.0.1:submission (587) and 127.0.0.1:submissions (465),
# or submission and submissions for every address. Restrictions of their own
# go in the -o lines below (for example smtpd_client_restrictions=$mua_client_restrictions,
# with mua_client_restrictions set in main.cf). Users log in against the
# built-in users table: add them with "mta sasl add USER" (or point
# smtpd_sasl_type and smtpd_sasl_path at Dovecot's auth socket).
#127.0.0.1:10587 inet n  -       n       -       -       smtpd
#  -o syslog_name=mta/submission
#  -o smtpd_tls_security_level=encrypt
#  -o smtpd_sasl_auth_enable=yes
#  -o smtpd_sasl_type=mta
#  -o smtpd_tls_auth_only=yes
#  -o smtpd_reject_unlisted_recipient=no
#  -o smtpd_client_restrictions=
#  -o smtpd_helo_restrictions=
#  -o smtpd_sender_restrictions=
#  -o smtpd_relay_restrictions=
#  -o smtpd_recipient_restrictions=permit_sasl_authenticated,reject
#127.0.0.1:10465 inet n  -       n       -       -       smtpd
#  -o syslog_name=mta/submissions
#  -o smtpd_tls_wrappermode=yes
#  -o smtpd_sasl_auth_enable=yes
#  -o smtpd_sasl_type=mta
#  -o smtpd_reject_unlisted_recipient=no
#  -o smtpd_client_restrictions=
#  -o smtpd_helo_restrictions=
#  -o smtpd_sender_restrictions=
#  -o smtpd_relay_restrictions=
#  -o smtpd_recipient_restrictions=permit_sasl_authenticated,reject
"""
_SMTPD_LINE = "127.0.0.1:{smtp} inet n   -       n       -       -       smtpd\n"
MASTER_CF_TEXT = MASTER_CF_TEXT.replace(_SMTPD_LINE, _SMTPD_LINE + SUBMISSION_CF_TEXT)

OLD_MASTER_CF_TEXTS = (
    MASTER_CF_TEXT_0_1,
    MASTER_CF_TEXT_0_2,
    MASTER_CF_TEXT_0_3,
    MASTER_CF_TEXT_0_4,
)  # replaced when untouched


def ensure_instance() -> str:
    """Create the default instance if it is missing; return its directory."""
    top = instance_dir()
    os.makedirs(top, mode=0o700, exist_ok=True)
    for sub in ("spool", "data", "mail"):
        os.makedirs(os.path.join(top, sub), mode=0o700, exist_ok=True)
    main_cf = os.path.join(top, "main.cf")
    try:
        with open(main_cf, encoding="utf-8") as f:
            old_main = f.read()
    except FileNotFoundError:
        old_main = None
    if old_main is None or old_main == main_cf_text_0_3(top):
        write_atomically(main_cf, main_cf_text(top))
    _ensure_aliases(os.path.join(top, "aliases"))
    master_cf = os.path.join(top, "master.cf")
    current = MASTER_CF_TEXT.format(smtp=SMTP_PORT, qmqp=QMQP_PORT)
    try:
        with open(master_cf, encoding="utf-8") as f:
            old = f.read()
    except FileNotFoundError:
        old = None
    untouched = {t.format(smtp=SMTP_PORT, qmqp=QMQP_PORT) for t in OLD_MASTER_CF_TEXTS}
    if old is None or old in untouched:
        write_atomically(master_cf, current)
    return top


def _ensure_aliases(path: str) -> None:
    """Write the instance's aliases file and build aliases.lmdb, each when missing."""
    if not os.path.exists(path):
        write_atomically(path, aliases_text())
    if not os.path.exists(path + ".lmdb"):
        # only on first use: the build needs LMDB, which other commands may never load
        from mta.local.aliases_file import build_alias_lmdb
        from mta.maps import MapError

        try:
            build_alias_lmdb(path)
        except MapError as exc:
            raise ConfigError(f"cannot build the alias database: {exc}", path=path) from None
