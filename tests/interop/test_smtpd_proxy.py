"""smtpd_proxy_filter, the before-queue content filter: an in-process smtpd in front of an
aiosmtpd proxy, and Postfix's SMTPD_PROXY_README set-up under the real master (the
proxy hands the message to a second smtpd, XFORWARD keeps the original client)."""

from __future__ import annotations

import asyncio
import re
import smtplib

import pytest
from aiosmtpd.controller import Controller, UnixSocketController
from aiosmtpd.smtp import SMTP

from mta import log
from tests.support.instance import RawClient, greet, incoming_files
from tests.support.running import RELAY_MAIN, Instance, free_port, wait_for
from tests.unit.smtp.peers import ScriptServer, read_line, sink

pytestmark = [pytest.mark.interop, pytest.mark.timeout(120)]

PROXY_PORT = free_port()
MESSAGE = b"Subject: proxied\r\n\r\nline\r\n.dotted line\r\n"


class XforwardSMTP(SMTP):
    """aiosmtpd that takes XFORWARD, as a filter that passes it on does."""

    async def smtp_XFORWARD(self, arg):
        self.session.xforward = getattr(self.session, "xforward", []) + arg.split()
        await self.push("250 2.0.0 Ok")


class ProxyHandler:
    """The filter: records what it gets; refuses what it is told to."""

    def __init__(self, forward_port: int = 0) -> None:
        self.forward_port = forward_port
        self.messages: list[tuple[str, list[str], bytes, list[str]]] = []
        self.commands: list[str] = []
        self.reject_rcpt: dict[str, str] = {}
        self.data_reply = "250 2.0.0 Ok: queued as PROXY1"

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        self.commands.append(f"EHLO {hostname}")
        return [
            *responses[:-1],
            "250-XFORWARD NAME ADDR PROTO HELO SOURCE PORT IDENT",
            responses[-1],
        ]

    async def handle_MAIL(self, server, session, envelope, address, options):
        self.commands.append(f"MAIL {address}")
        envelope.mail_from = address
        return "250 2.1.0 proxy likes the sender"

    async def handle_RCPT(self, server, session, envelope, address, options):
        self.commands.append(f"RCPT {address}")
        if address in self.reject_rcpt:
            return self.reject_rcpt[address]
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 proxy likes the recipient"

    async def handle_DATA(self, server, session, envelope):
        xforward = getattr(session, "xforward", [])
        self.messages.append(
            (envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content, xforward)
        )
        if not self.forward_port or not self.data_reply.startswith("250"):
            return self.data_reply
        content = b"X-Proxy-Filter: seen\r\n" + envelope.original_content

        def forward() -> str:
            with smtplib.SMTP("127.0.0.1", self.forward_port, timeout=20) as s:
                s.ehlo("proxy.example")
                if xforward and s.has_extn("xforward"):
                    s.docmd("XFORWARD", " ".join(xforward))
                s.sendmail(envelope.mail_from, envelope.rcpt_tos, content)
            return "250 2.0.0 Ok: passed on"

        return await asyncio.get_running_loop().run_in_executor(None, forward)


class ProxyController(Controller):
    def factory(self):
        return XforwardSMTP(self.handler)


@pytest.fixture
def proxy():
    handler = ProxyHandler()
    ctl = ProxyController(handler, hostname="127.0.0.1", port=PROXY_PORT)
    ctl.start()
    yield handler
    ctl.stop()


def read_log(smtpd) -> str:
    log.flush()
    return smtpd.maillog.read_text()


PROXIED = pytest.mark.main_cf(f"smtpd_proxy_filter = 127.0.0.1:{PROXY_PORT}\n")


@PROXIED
def test_message_goes_to_the_proxy_and_its_reply_is_the_clients(smtpd, proxy):
    with smtplib.SMTP("127.0.0.1", smtpd.port) as s:
        s.ehlo("client.example")
        code, text = s.mail("a@sender.example")
        assert (code, text) == (250, b"2.1.0 proxy likes the sender")
        code, text = s.rcpt("user@mx.test.example")
        assert (code, text) == (250, b"2.1.5 proxy likes the recipient")
        code, text = s.data(MESSAGE)
    assert (code, text) == (250, b"2.0.0 Ok: queued as PROXY1")
    assert incoming_files(smtpd.cdir) == []  # smtpd queued nothing itself
    ((sender, rcpts, data, xforward),) = proxy.messages
    assert (sender, rcpts) == ("a@sender.example", ["user@mx.test.example"])
    assert data.startswith(b"Received: from client.example (")
    assert data.endswith(b"Subject: proxied\r\n\r\nline\r\n.dotted line\r\n")
    assert "ADDR=127.0.0.1" in xforward and "HELO=client.example" in xforward
    assert proxy.commands[0] == "EHLO mx.test.example"  # smtpd_proxy_ehlo = $myhostname
    assert re.search(
        r"NOQUEUE: proxy-accept: END-OF-MESSAGE: 250 2\.0\.0 Ok: queued as PROXY1; "
        r"from=<a@sender\.example> to=<user@mx\.test\.example> proto=ESMTP helo=<client\.example>",
        read_log(smtpd),
    )


@PROXIED
def test_proxy_refusing_the_content_refuses_the_message(smtpd, proxy):
    proxy.data_reply = "554 5.7.1 looks like spam"
    with smtplib.SMTP("127.0.0.1", smtpd.port) as s:
        s.ehlo("client.example")
        with pytest.raises(smtplib.SMTPDataError) as info:
            s.sendmail("a@sender.example", ["user@mx.test.example"], MESSAGE)
    assert (info.value.smtp_code, info.value.smtp_error) == (554, b"5.7.1 looks like spam")
    assert "NOQUEUE: proxy-reject: END-OF-MESSAGE: 554 5.7.1 looks like spam" in read_log(smtpd)


@PROXIED
def test_proxy_refusing_a_recipient_refuses_it_to_the_client(smtpd, proxy):
    proxy.reject_rcpt["nobody@mx.test.example"] = "550 5.1.1 proxy says no such user"
    with smtplib.SMTP("127.0.0.1", smtpd.port) as s:
        s.ehlo("client.example")
        s.mail("a@sender.example")
        assert s.rcpt("nobody@mx.test.example") == (550, b"5.1.1 proxy says no such user")
        assert s.rcpt("user@mx.test.example")[0] == 250
        code, _ = s.data(MESSAGE)
    assert code == 250
    assert proxy.messages[0][1] == ["user@mx.test.example"]


@PROXIED
def test_smtpds_own_restrictions_come_first(smtpd, proxy):
    client = RawClient(smtpd.port, source="127.0.0.2")  # outside mynetworks
    greet(client)
    client.send(b"MAIL FROM:<a@outside.example>\r\n")
    assert client.reply().startswith("250 2.1.0 proxy likes")
    client.send(b"RCPT TO:<victim@elsewhere.example>\r\n")
    assert client.reply().endswith("Relay access denied")
    client.close()
    assert "RCPT victim@elsewhere.example" not in proxy.commands  # never passed on


@pytest.mark.main_cf(f"smtpd_proxy_filter = 127.0.0.1:{PROXY_PORT}\n")
def test_proxy_down_gets_451_and_the_session_goes_on(smtpd):
    client = RawClient(smtpd.port)
    greet(client)
    client.send(b"MAIL FROM:<a@sender.example>\r\n")
    assert client.reply() == "451 4.3.0 Error: queue file write error"
    client.send(b"NOOP\r\n")
    assert client.reply().startswith("250")
    client.send(b"MAIL FROM:<a@sender.example>\r\n")
    assert client.reply() == "451 4.3.0 Error: queue file write error"
    client.close()
    assert (
        f"warning: connect to proxy filter 127.0.0.1:{PROXY_PORT}: Connection refused"
        in read_log(smtpd)
    )


SILENT_PORT = free_port()


@pytest.fixture
def silent_proxy():
    async def script(reader, writer, received):
        writer.write(b"220 slow.example ESMTP\r\n")
        await read_line(reader, received)
        await asyncio.sleep(10)

    srv = ScriptServer(script)
    yield srv
    srv.stop()


@pytest.fixture
def silent_smtpd(tmp_path, silent_proxy):
    from tests.support.instance import SmtpdThread, make_instance

    cdir = make_instance(
        tmp_path, f"smtpd_proxy_filter = 127.0.0.1:{silent_proxy.port}\nsmtpd_proxy_timeout = 1s\n"
    )
    server = SmtpdThread(cdir)
    server.cdir = cdir
    server.maillog = tmp_path / "maillog"
    yield server
    server.close()


def test_proxy_timeout_gets_451(silent_smtpd, silent_proxy):
    client = RawClient(silent_smtpd.port)
    greet(client)
    client.send(b"MAIL FROM:<a@sender.example>\r\n")
    assert client.reply() == "451 4.3.0 Error: queue file write error"
    client.close()
    text = read_log(silent_smtpd)
    assert f"warning: timeout talking to proxy filter 127.0.0.1:{silent_proxy.port}" in text


@pytest.mark.main_cf(
    f"smtpd_proxy_filter = inet:127.0.0.1:{PROXY_PORT}\nsmtpd_proxy_options = speed_adjust\n"
)
def test_speed_adjust_connects_only_after_the_whole_message(smtpd, proxy):
    with smtplib.SMTP("127.0.0.1", smtpd.port) as s:
        s.ehlo("client.example")
        assert s.mail("a@sender.example") == (250, b"2.1.0 Ok")  # smtpd's own
        assert s.rcpt("user@mx.test.example") == (250, b"2.1.5 Ok")
        assert s.rcpt("other@mx.test.example") == (250, b"2.1.5 Ok")
        assert proxy.commands == []  # not connected yet
        code, text = s.data(MESSAGE)
    assert (code, text) == (250, b"2.0.0 Ok: queued as PROXY1")
    ((sender, rcpts, data, _),) = proxy.messages
    assert rcpts == ["user@mx.test.example", "other@mx.test.example"]
    assert data.endswith(MESSAGE)


@pytest.mark.main_cf(
    f"smtpd_proxy_filter = 127.0.0.1:{PROXY_PORT}\nsmtpd_proxy_options = speed_adjust\n"
)
def test_speed_adjust_refusal_is_the_reply_to_the_message(smtpd, proxy):
    proxy.reject_rcpt["user@mx.test.example"] = "550 5.1.1 unknown there"
    with smtplib.SMTP("127.0.0.1", smtpd.port) as s:
        s.ehlo("client.example")
        with pytest.raises(smtplib.SMTPDataError) as info:
            s.sendmail("a@sender.example", ["user@mx.test.example"], MESSAGE)
    assert (info.value.smtp_code, info.value.smtp_error) == (550, b"5.1.1 unknown there")
    assert proxy.messages == []


@pytest.fixture
def unix_proxy(tmp_path):
    handler = ProxyHandler()
    path = tmp_path / "spool" / "private" / "proxy"
    path.parent.mkdir(parents=True, exist_ok=True)

    class Ctl(UnixSocketController):
        def factory(self):
            return XforwardSMTP(self.handler)

    ctl = Ctl(handler, unix_socket=str(path))
    ctl.start()
    yield handler
    ctl.stop()


@pytest.mark.main_cf("smtpd_proxy_filter = unix:private/proxy\n")
def test_unix_domain_proxy_relative_to_the_queue_directory(unix_proxy, smtpd):
    with smtplib.SMTP("127.0.0.1", smtpd.port) as s:
        s.ehlo("client.example")
        assert s.sendmail("a@sender.example", ["user@mx.test.example"], MESSAGE) == {}
    ((sender, rcpts, _, _),) = unix_proxy.messages
    assert (sender, rcpts) == ("a@sender.example", ["user@mx.test.example"])


# ---------------------------------------------------------------- under the master


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    top = tmp_path_factory.mktemp("proxychain")
    ctl, handler = sink()
    port, proxy_port, after_port = free_port(), free_port(), free_port()
    inst = Instance(
        top,
        f"127.0.0.1:{port} inet n - n - 20 smtpd\n"
        f"    -o smtpd_proxy_filter=127.0.0.1:{proxy_port}\n"
        "    -o smtpd_client_connection_count_limit=10\n"
        f"127.0.0.1:{after_port} inet n - n - - smtpd\n"
        "    -o smtpd_authorized_xforward_hosts=127.0.0.0/8\n"
        "    -o smtpd_client_restrictions=\n"
        "    -o smtpd_helo_restrictions=\n"
        "    -o smtpd_sender_restrictions=\n"
        "    -o smtpd_relay_restrictions=\n"
        "    -o smtpd_recipient_restrictions=permit_mynetworks,reject\n"
        "    -o smtpd_data_restrictions=\n"
        "    -o mynetworks=127.0.0.0/8\n"
        "    -o receive_override_options=no_unknown_recipient_checks\n"
        "qmgr fifo n - n 300 1 qmgr\n"
        "cleanup unix n - n - 0 cleanup\n"
        "smtp unix - - n - - smtp\n",
        {
            **RELAY_MAIN,
            "transport_maps": f"inline:{{remote.example=smtp:[127.0.0.1]:{ctl.port}}}",
        },
    )
    handler_proxy = ProxyHandler(forward_port=after_port)
    proxy_ctl = ProxyController(handler_proxy, hostname="127.0.0.1", port=proxy_port)
    proxy_ctl.start()
    r = inst.mta("start")
    assert r.returncode == 0, r.stderr
    inst.port = port
    try:
        yield inst, handler, handler_proxy
    finally:
        inst.stop()
        proxy_ctl.stop()
        ctl.stop()


def test_readme_set_up_filters_before_the_queue_and_logs_the_client(chain):
    inst, handler, proxy_handler = chain
    with smtplib.SMTP("127.0.0.1", inst.port, timeout=20) as s:
        s.ehlo("client.example")
        s.sendmail("a@client.example", ["x@remote.example", "y@remote.example"], MESSAGE)
    assert wait_for(lambda: handler.messages, 30), inst.log()
    ((sender, rcpts, data, _),) = handler.messages
    assert (sender, sorted(rcpts)) == ("a@client.example", ["x@remote.example", "y@remote.example"])
    assert data.count(b"X-Proxy-Filter: seen") == 1
    log_text = inst.wait_log(r"status=sent", 30, count=2)
    assert "NOQUEUE: proxy-accept: END-OF-MESSAGE: 250 2.0.0 Ok: passed on" in log_text
    # the after-filter smtpd names the original client (XFORWARD through the proxy)
    assert re.search(r"\w+: client=\S+\[127\.0\.0\.1\], orig_client=\S+\[127\.0\.0\.1\]", log_text)
    assert b"Received: from client.example (" in data


@PROXIED
def test_bdat_message_goes_to_the_proxy_as_data(smtpd, proxy):
    client = RawClient(smtpd.port)
    greet(client)
    client.send(b"MAIL FROM:<a@sender.example>\r\n")
    assert client.reply().startswith("250")
    client.send(b"RCPT TO:<user@mx.test.example>\r\n")
    assert client.reply().startswith("250")
    client.send(b"BDAT %d LAST\r\n" % len(MESSAGE) + MESSAGE)
    assert client.reply() == "250 2.0.0 Ok: queued as PROXY1"
    client.close()
    assert proxy.messages[0][2].endswith(MESSAGE)
