"""common.deliver_request - what qmgr asks of a delivery agent, and the answers

SYNOPSIS
    from mta.common.deliver_request import DeliveryRequest, RequestRecipient, deliver
    req = DeliveryRequest(queue_name="active", queue_id=qid, sender="a@x",
                          nexthop="example.com", transport="smtp",
                          recipients=[RequestRecipient("b@example.com", offset=812)])
    result = await deliver(socket_path, req, timeout=3600)
    result.statuses        # [RecipientStatus, ...] in the agent's order
    result.hop_dsn         # "4.4.1" when the next hop itself failed, else ""

DESCRIPTION
    qmgr writes each request to the agent's socket (private/TRANSPORT)
    as one attr_proto message; the agent answers with one "rcpt"
    message per recipient as each is finished and one "done" message
    at the end. Unlike Postfix, which connects once per delivery, qmgr
    then keeps the connection for up to POOL_IDLE seconds and sends the
    next request to the same agent on it; the agent waits a little
    longer than that for one before it closes its end. Setting up a
    connection cost about a tenth of the smtp agent's time per message.

    The request names the queue file (queue_name, queue_id), the
    sender, the next hop and the transport that chose it, the message's
    arrival time and the time qmgr took it into the active queue (for
    the "delays=" of the log), flags, and the batch of recipients, each
    with its original address, DSN ORCPT and NOTIFY and the offset of
    its record in the queue file (how the agent marks it done).

    A recipient status carries the action (delivered, relayed,
    expanded, delayed, failed), the enhanced status code, the reason and
    the relay. The "done" message may carry hop_dsn and hop_reason: the
    next hop itself could not be reached or refused the session, which
    qmgr counts against the destination's concurrency (negative
    feedback) instead of against single recipients.

    deliver() runs one request and returns a DeliveryResult; when the
    agent cannot be reached or breaks off, the result has error set and
    the recipients without a status are the caller's to defer.

SECURITY
    Both sides are mta processes on private sockets. Addresses and
    reasons inside may come from untrusted mail and servers: decoding
    checks every number and bounds every message (attr_proto).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from mta.common.attr_proto import encode, read_attrs
from mta.common.deadline import bounded
from mta.common.dsn import ACTIONS, RecipientStatus

REQ_FLAG_BOUNCE = 1 << 0  # the message is a notice: never bounce it again
REQ_FLAG_VERIFY = 1 << 1  # address probe or sendmail -bv: find out, do not deliver
REQ_FLAG_EXPIRED = 1 << 2  # the message is past its lifetime
REQ_FLAG_RECORD = 1 << 3  # sendmail -v: every status goes to the trace log

MSG_RCPT = "rcpt"  # agent -> qmgr: one recipient is finished
MSG_DONE = "done"  # agent -> qmgr: the request is finished

CONNECT_TIMEOUT = 10.0  # seconds to reach an agent's socket
POOL_IDLE = 1.0  # seconds qmgr keeps a finished connection for the next request
POOL_MAX = 256  # finished connections kept per agent socket


class RequestError(ValueError):
    """A request or answer that does not decode."""


@dataclass
class RequestRecipient:
    address: str
    offset: int
    orig: str = ""
    dsn_orcpt: str = ""
    notify: int = 0


@dataclass
class DeliveryRequest:
    queue_name: str
    queue_id: str
    sender: str
    nexthop: str
    transport: str
    recipients: list[RequestRecipient]
    arrival: float = 0.0
    active_time: float = 0.0  # when qmgr took the message into the active queue
    flags: int = 0
    attrs: dict[str, str] = field(default_factory=dict)  # envelope attributes (envid, ret ...)
    content_offset: int = 0
    content_size: int = 0

    def encode(self) -> dict[str, str]:
        out = {
            "queue_name": self.queue_name,
            "queue_id": self.queue_id,
            "sender": self.sender,
            "nexthop": self.nexthop,
            "transport": self.transport,
            "arrival": f"{self.arrival:.6f}",
            "active_time": f"{self.active_time:.6f}",
            "flags": str(self.flags),
            "content_offset": str(self.content_offset),
            "content_size": str(self.content_size),
            "nrcpt": str(len(self.recipients)),
        }
        for name, value in self.attrs.items():
            out[f"attr.{name}"] = value
        for i, r in enumerate(self.recipients):
            out[f"rcpt.{i}"] = r.address
            out[f"offset.{i}"] = str(r.offset)
            if r.orig:
                out[f"orig.{i}"] = r.orig
            if r.dsn_orcpt:
                out[f"orcpt.{i}"] = r.dsn_orcpt
            if r.notify:
                out[f"notify.{i}"] = str(r.notify)
        return out

    @classmethod
    def decode(cls, msg: dict[str, str]) -> DeliveryRequest:
        try:
            n = int(msg["nrcpt"])
            recipients = [
                RequestRecipient(
                    address=msg[f"rcpt.{i}"],
                    offset=int(msg[f"offset.{i}"]),
                    orig=msg.get(f"orig.{i}", ""),
                    dsn_orcpt=msg.get(f"orcpt.{i}", ""),
                    notify=int(msg.get(f"notify.{i}", "0")),
                )
                for i in range(n)
            ]
            req = cls(
                queue_name=msg["queue_name"],
                queue_id=msg["queue_id"],
                sender=msg["sender"],
                nexthop=msg["nexthop"],
                transport=msg.get("transport", ""),
                recipients=recipients,
                arrival=float(msg.get("arrival", "0")),
                active_time=float(msg.get("active_time", "0")),
                flags=int(msg.get("flags", "0")),
                attrs={k[5:]: v for k, v in msg.items() if k.startswith("attr.")},
                content_offset=int(msg.get("content_offset", "0")),
                content_size=int(msg.get("content_size", "0")),
            )
        except (KeyError, ValueError) as exc:
            raise RequestError(f"bad delivery request: {exc}") from None
        bad = "/" in req.queue_id or "/" in req.queue_name or req.queue_id.startswith(".")
        if bad or not req.queue_id or n < 1:
            raise RequestError("bad delivery request: queue name, queue id or recipients")
        return req


def encode_status(st: RecipientStatus) -> dict[str, str]:
    out = {
        "type": MSG_RCPT,
        "offset": str(st.offset),
        "recipient": st.address,
        "action": st.action,
        "dsn": st.dsn,
        "reason": st.reason,
        "relay": st.relay,
        "word": st.status_word,
        "dsn_passed": "1" if st.dsn_passed else "",
    }
    if st.klass:
        out["class"] = st.klass
    if st.source:
        out["source"] = st.source
    if st.delays:
        out["delays"] = " ".join(f"{d:.3f}" for d in st.delays)
    if st.diag_type:  # a remote server's reply, for the notice
        out["diag_type"] = st.diag_type
        out["diag_text"] = st.diag_text
        out["remote_mta"] = st.remote_mta
    return out


def decode_status(msg: dict[str, str], req: DeliveryRequest | None = None) -> RecipientStatus:
    try:
        st = RecipientStatus(
            address=msg["recipient"],
            offset=int(msg["offset"]),
            action=msg["action"],
            dsn=msg["dsn"],
            reason=msg.get("reason", ""),
            relay=msg.get("relay", "none"),
            status_word=msg.get("word", ""),
            dsn_passed=msg.get("dsn_passed") == "1",
            diag_type=msg.get("diag_type", ""),
            diag_text=msg.get("diag_text", ""),
            remote_mta=msg.get("remote_mta", ""),
            klass=msg.get("class", ""),
            source=msg.get("source", ""),
            delays=tuple(float(d) for d in msg.get("delays", "").split()[:4]),
        )
    except (KeyError, ValueError) as exc:
        raise RequestError(f"bad recipient status: {exc}") from None
    if st.action not in ACTIONS:
        raise RequestError(f"bad recipient status: action {st.action!r}")
    if req is not None:
        for r in req.recipients:
            if r.offset == st.offset:
                st.orig, st.dsn_orcpt, st.notify = r.orig, r.dsn_orcpt, r.notify
                break
        else:
            raise RequestError(f"status for a recipient not in the request: {st.offset}")
    return st


@dataclass
class DeliveryResult:
    statuses: list[RecipientStatus] = field(default_factory=list)
    hop_dsn: str = ""  # set when the next hop itself failed
    hop_reason: str = ""
    error: str = ""  # the agent could not be reached or broke off
    broken: bool = False  # the connection closed or failed before any answer

    def missing(self, req: DeliveryRequest) -> list[RequestRecipient]:
        """Recipients of req that got no status."""
        seen = {st.offset for st in self.statuses}
        return [r for r in req.recipients if r.offset not in seen]


async def _converse(reader: asyncio.StreamReader, req: DeliveryRequest, result) -> bool:
    """Collect the answers; True when the agent said "done"."""
    while True:
        msg = await read_attrs(reader)
        if msg is None:
            result.error = "delivery agent closed the connection early"
            return False
        kind = msg.get("type")
        if kind == MSG_RCPT:
            result.statuses.append(decode_status(msg, req))
        elif kind == MSG_DONE:
            result.hop_dsn = msg.get("hop_dsn", "")
            result.hop_reason = msg.get("hop_reason", "")
            return True
        else:
            raise RequestError(f"unexpected message from the agent: {kind!r}")


class _Spare:
    """A connection to an agent that finished its last request."""

    __slots__ = ("reader", "writer", "since", "loop")

    def __init__(self, reader, writer) -> None:
        self.reader, self.writer = reader, writer
        self.since = time.monotonic()
        self.loop = asyncio.get_running_loop()

    def usable(self, now: float) -> bool:
        return (
            now - self.since < POOL_IDLE
            and self.loop is asyncio.get_running_loop()
            and not self.reader.at_eof()
            and not self.writer.is_closing()
        )

    def close(self) -> None:
        try:
            self.writer.close()
        except RuntimeError:
            pass  # its event loop is gone, and the connection with it


_spares: dict[str, list[_Spare]] = {}


def _take_spare(path: str) -> _Spare | None:
    spares = _spares.get(path)
    now = time.monotonic()
    while spares:
        spare = spares.pop()  # the most recently used first
        if spare.usable(now):
            return spare
        spare.close()
    return None


def _keep_spare(path: str, reader, writer) -> bool:
    spares = _spares.setdefault(path, [])
    if len(spares) >= POOL_MAX:
        return False
    spares.append(_Spare(reader, writer))
    return True


def close_spares() -> None:
    """Close every kept connection (qmgr stopping)."""
    for spares in _spares.values():
        for spare in spares:
            spare.close()
    _spares.clear()


async def deliver(path: str, req: DeliveryRequest, timeout: float) -> DeliveryResult:
    """Send req to the agent listening on the UNIX socket path; collect its answers.

    A connection whose agent finished its last request is used again (the
    agent keeps it open for a while, see deliver_agent.serve_connection).
    When such a connection turns out to be closed before any answer came,
    the request goes once more on a new connection; an agent that got as
    far as marking a recipient done will not deliver it again."""
    spare = _take_spare(path)
    if spare is not None:
        result = await _attempt(path, req, timeout, spare.reader, spare.writer)
        if not (result.broken and not result.statuses):
            return result
    return await _attempt(path, req, timeout, None, None)


async def _attempt(path, req, timeout, reader, writer) -> DeliveryResult:
    result = DeliveryResult()
    keep = False
    try:
        if writer is None:
            reader, writer = await bounded(asyncio.open_unix_connection(path), CONNECT_TIMEOUT)
        writer.write(encode(req.encode()))
        keep = await bounded(_converse(reader, req, result), timeout)
        result.broken = not keep
    except asyncio.TimeoutError:
        result.error = "delivery agent timed out"
    except OSError as exc:
        result.error = f"delivery agent: {exc}"
        result.broken = True
    except ValueError as exc:
        result.error = f"delivery agent: {exc}"
    finally:
        if writer is not None and not (keep and _keep_spare(path, reader, writer)):
            writer.close()
    return result


__all__ = [
    "DeliveryRequest",
    "DeliveryResult",
    "RequestError",
    "RequestRecipient",
    "decode_status",
    "deliver",
    "encode",
    "encode_status",
]
