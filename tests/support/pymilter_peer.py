"""A scripted milter on Sendmail's libmilter (Debian python3-milter), for the milter tests.

Runs under /usr/bin/python3 (the system Python that has the Milter module), never the
venv: ``/usr/bin/python3 pymilter_peer.py SOCKET`` where SOCKET is libmilter's
``inet:PORT@127.0.0.1`` or ``unix:/path``. Prints "ready" once it listens.

What it does is chosen by the mail itself:
  recipient local part  rej (550 multi-line reply), temp (tempfail), disc (discard),
                        acc (accept the message: no more events)
  HELO name             helo-reject: 550 reply at HELO
  Subject at the end    edit (every modification), quarantine, reject, tempfail,
                        discard, accept, progress (4 s of progress calls), skip (SKIP in
                        the body; X-Body-Chunks: counts the chunks seen), reply (own
                        reply code), slow (3 s, no progress), and anything else:
                        continue
  an unknown command    XYZZY...: 550 5.5.1 reply
Subject "received" changes the first Received: header, "noreceived" deletes it.
Recipients the MTA refused (it asks for them: P_RCPT_REJ) are listed with their
{rcpt_host} and {rcpt_addr} in X-Milter-Rejected:.
Every message it lets through gets X-Milter-Macros: with the macros it saw and
X-Milter-Saw: with the header count, the first header's value as received and the
ESMTP arguments of MAIL and RCPT (both without the MTA's own Received: when that comes
first; X-Milter-Received: then has its first line), and X-Milter-Connect: with the
hostname and address of the connect event.
"""

import sys
import time

import Milter

MACROS = (
    "j",
    "_",
    "{daemon_name}",
    "{daemon_addr}",
    "v",
    "{client_addr}",
    "{client_name}",
    "{client_port}",
    "{client_connections}",
    "{client_ptr}",
    "i",
    "{mail_addr}",
    "{mail_host}",
    "{mail_mailer}",
    "{rcpt_addr}",
    "{rcpt_host}",
    "{rcpt_mailer}",
)


class Scripted(Milter.Base):
    def __init__(self):
        self.reset()

    def reset(self):
        self.headers = []
        self.subject = ""
        self.chunks = 0
        self.macros = {}
        self.mail_args = []
        self.rcpt_args = []
        self.rejected = []

    def note_macros(self):
        for name in MACROS:
            value = self.getsymval(name)
            if value is not None:
                self.macros[name] = value

    def connect(self, hostname, family, hostaddr):
        self.note_macros()
        self.connected = f"{hostname} {hostaddr[0] if hostaddr else '-'}"
        return Milter.CONTINUE

    def hello(self, name):
        self.note_macros()
        if name == "helo-reject":
            self.setreply("550", "5.7.1", "no such greeting")
            return Milter.REJECT
        return Milter.CONTINUE

    def envfrom(self, sender, *args):
        saved = dict(self.macros)
        self.reset()
        self.macros = saved
        self.mail_args = list(args)
        self.note_macros()
        return Milter.CONTINUE

    def envrcpt(self, rcpt, *args):
        if self.getsymval("{rcpt_mailer}") == "error":  # one the MTA refused (P_RCPT_REJ)
            code, text = self.getsymval("{rcpt_host}"), self.getsymval("{rcpt_addr}")
            self.rejected.append(f"{rcpt} {code} {text}")
            return Milter.CONTINUE
        self.note_macros()
        self.rcpt_args += list(args)
        local = rcpt.strip("<>").split("@")[0]
        if local == "rej":
            self.setreply("550", "5.7.1", "first line", "second line")
            return Milter.REJECT
        if local == "temp":
            return Milter.TEMPFAIL
        if local == "disc":
            return Milter.DISCARD
        if local == "acc":
            return Milter.ACCEPT
        return Milter.CONTINUE

    def unknown(self, cmd):
        if cmd.startswith("XYZZY"):
            self.setreply("550", "5.5.1", "nothing happens")
            return Milter.REJECT
        return Milter.CONTINUE

    def header(self, name, value):
        self.headers.append((name, value))
        if name.lower() == "subject":
            self.subject = value.strip()
        return Milter.CONTINUE

    def eoh(self):
        self.note_macros()
        return Milter.CONTINUE

    def body(self, chunk):
        self.chunks += 1
        if self.subject == "skip":
            return Milter.SKIP
        return Milter.CONTINUE

    def eom(self):
        self.note_macros()
        what = self.subject
        if what == "reject":
            return Milter.REJECT
        if what == "tempfail":
            return Milter.TEMPFAIL
        if what == "discard":
            return Milter.DISCARD
        if what == "reply":
            self.setreply("554", "5.7.0", "content refused", "see the policy")
            return Milter.REJECT
        if what == "accept":
            return Milter.ACCEPT
        if what == "slow":
            time.sleep(3)
        if what == "progress":
            for _ in range(4):
                time.sleep(1)
                self.progress()
        if what == "quarantine":
            self.quarantine("suspicious content")
        if what == "edit":
            self.addheader("X-Added", "appended")
            self.addheader("X-Inserted", "at the top", 0)
            self.chgheader("X-Change-Me", 1, "changed")
            self.chgheader("X-Delete-Me", 1, "")
            self.replacebody(b"replaced body\r\n")
            self.addrcpt("<added@test.example>")
            self.addrcpt(
                "<added-par@test.example>",
                "NOTIFY=SUCCESS,DELAY ORCPT=rfc822;orig+40test.example XYZ=1",
            )
            self.delrcpt("<gone@test.example>")
            self.chgfrom("<new-sender@test.example>", "BODY=8BITMIME")
        if what == "skip":
            self.addheader("X-Body-Chunks", str(self.chunks))
        if what == "received":
            self.chgheader("Received", 1, "from milter.example (changed by the milter)")
        if what == "noreceived":
            self.chgheader("Received", 1, "")
        if self.rejected:
            self.addheader("X-Milter-Rejected", "; ".join(self.rejected))
        shown = "; ".join(f"{k}={v}" for k, v in sorted(self.macros.items()))
        self.addheader("X-Milter-Macros", shown)
        self.addheader("X-Milter-Connect", getattr(self, "connected", "-"))
        headers = self.headers
        if headers and headers[0][0].lower() == "received":  # the MTA's own, on top
            self.addheader("X-Milter-Received", headers[0][1].split("\n")[0])
            headers = headers[1:]
        first = repr(headers[0][1]) if headers else "-"
        args = ",".join(self.mail_args + self.rcpt_args)
        self.addheader("X-Milter-Saw", f"{len(headers)} {first} {args}")
        return Milter.CONTINUE

    def abort(self):
        return Milter.CONTINUE

    def close(self):
        return Milter.CONTINUE


def main():
    socket = sys.argv[1]
    Milter.factory = Milter.rejected_recipients(Scripted)
    Milter.set_flags(
        Milter.ADDHDRS
        | Milter.CHGHDRS
        | Milter.CHGBODY
        | Milter.ADDRCPT
        | Milter.ADDRCPT_PAR
        | Milter.DELRCPT
        | Milter.CHGFROM
        | Milter.QUARANTINE
    )
    print("ready", flush=True)
    Milter.runmilter("scripted", socket, 240)


if __name__ == "__main__":
    main()
