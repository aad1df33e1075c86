"""The mail system with mail_owner = nobody under the real master, as root starts it
on a server: the privileged local agent delivers to a user that exists, and bounces
an unknown one; qmgr (as nobody) reads the bounce log the agent wrote as root, sends
the notice and removes the message: nothing stays in active/.

The same again with mta installed where only root can read it (a copy of the package
in a 0700 directory, as a virtualenv under /root): "mta check" names the directory,
and the services still work, because they load what they import later before they
give up root."""

from __future__ import annotations

import os
import pwd
import shutil
import smtplib
import tempfile

import pytest

import mta
from tests.support.running import Instance, free_port, wait_for

pytestmark = [
    pytest.mark.interop,
    pytest.mark.timeout(120),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run services as nobody"),
]

USER = "daemon"  # a user that exists, not root: its mailbox is written with its rights


def queue_files(queue_dir: str, queue: str) -> list[str]:
    out = []
    for _root, _, files in os.walk(os.path.join(queue_dir, queue)):
        out += [f for f in files if not f.startswith(".")]
    return out


@pytest.fixture
def top():
    # pytest's tmp_path is under a 0700 directory of root's: nobody could not
    # reach the queue there
    path = tempfile.mkdtemp(prefix="mta-nobody-", dir="/tmp")
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(params=["shared", "root-only"])
def inst(top, request):
    pwd.getpwnam(USER)  # KeyError: no such user on this machine
    spool = os.path.join(top, "mail")
    os.mkdir(spool)
    os.chmod(spool, 0o1777)
    port = free_port()
    inst = Instance(
        top,
        f"127.0.0.1:{port} inet n - n - - smtpd\n"
        "qmgr fifo n - n 300 1 qmgr\n"
        "cleanup unix n - n - 0 cleanup\n"
        "local unix - n n - - local\n",
        {
            "mail_owner": "nobody",
            "myhostname": "mx.test.example",
            "mydestination": "mx.test.example",
            "mynetworks": "127.0.0.0/8",
            "alias_maps": f"lmdb:{top}/aliases",
            "local_recipient_maps": "",
            "smtpd_peername_lookup": "no",
            "mail_spool_directory": spool,
            # a delivery deferred by chance is tried again soon
            "minimal_backoff_time": "2s",
            "maximal_backoff_time": "4s",
            "queue_run_delay": "2s",
        },
    )
    inst.port, inst.spool = port, spool
    with open(os.path.join(top, "aliases"), "w") as f:
        f.write(f"forwarded: {USER}\n")
    r = inst.mta("alias", os.path.join(top, "aliases"))
    assert r.returncode == 0, r.stderr
    inst.private = None
    if request.param == "root-only":
        private = os.path.join(top, "private")
        os.mkdir(private, 0o700)
        shutil.copytree(os.path.dirname(mta.__file__), os.path.join(private, "mta"))
        inst.env["PYTHONPATH"] = inst.private = private
        r = inst.mta("check")
        assert r.returncode == 0, r.stderr
        assert f"mail_owner nobody cannot read {private}" in r.stderr
    r = inst.mta("start")
    assert r.returncode == 0, r.stderr + inst.log()
    yield inst
    inst.stop()


def test_local_delivery_and_local_bounce_with_an_unprivileged_mail_owner(inst):
    mbox = os.path.join(inst.spool, USER)
    with smtplib.SMTP("127.0.0.1", inst.port, timeout=30) as s:
        s.sendmail(
            f"{USER}@mx.test.example",
            [f"{USER}@mx.test.example"],
            b"Subject: kept\r\n\r\nfor a user that exists\r\n",
        )
        s.sendmail(
            f"{USER}@mx.test.example",
            ["nosuchuser@mx.test.example"],
            b"Subject: lost\r\n\r\nfor nobody we know\r\n",
        )
        # an alias: the local agent (root) queues a new message through cleanup
        s.sendmail(
            f"{USER}@mx.test.example",
            ["forwarded@mx.test.example"],
            b"Subject: aliased\r\n\r\nthrough an alias\r\n",
        )

    def mailbox() -> str:
        try:
            with open(mbox, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    # the delivered message and the non-delivery notice for the other land in the mailbox
    assert wait_for(
        lambda: all(
            text in mailbox()
            for text in ("for a user that exists", "nosuchuser", "through an alias")
        ),
        30,
    ), inst.log()[-4000:]
    assert wait_for(lambda: not queue_files(inst.queue, "active"), 15), inst.log()[-4000:]
    log = inst.log()
    assert "status=bounced" in log and "sender non-delivery notification" in log
    assert "Undelivered Mail Returned to Sender" in mailbox()
    assert os.stat(mbox).st_uid == pwd.getpwnam(USER).pw_uid
    for queue in ("active", "incoming", "deferred", "bounce", "defer", "corrupt"):
        assert queue_files(inst.queue, queue) == [], (queue, log[-4000:])
    assert "Traceback" not in log and "never retrieved" not in log
