"""anvil.server - count connections and event rates per client

SYNOPSIS
    from mta.anvil.server import AnvilService, Counters
    counters = Counters(rate_unit=60)
    count, rate = counters.connect("smtp:192.0.2.7", now)
    await AnvilService(cfg).handle_client(reader, writer, ctx)

DESCRIPTION
    Each request is one attr_proto message and gets one reply; IDENT is
    a client ident, the service name and the client address joined by a
    colon:

        {"request": "connect", "ident": IDENT}
            -> {"status": "0", "count": N, "rate": R}
        {"request": "disconnect", "ident": IDENT}     -> {"status": "0"}
        {"request": "message", "ident": IDENT}        -> {"status": "0", "rate": R}
        {"request": "recipient", "ident": IDENT}      -> {"status": "0", "rate": R}
        {"request": "auth", "ident": IDENT}           -> {"status": "0", "rate": R}
        {"request": "newtls", "ident": IDENT}         -> {"status": "0", "rate": R}
        {"request": "newtls_report", "ident": IDENT}  -> {"status": "0", "rate": R}
        {"request": "lookup", "ident": IDENT}
            -> {"status": "0", "count": N, "rate": R, "message": M, "recipient": T,
                "auth": A}

    N is the number of connections open now, R (M, T, A) the connections
    (messages, recipients, AUTH commands, new TLS sessions) counted in the
    current rate period (newtls_report tells the new TLS session rate
    without counting one): it starts
    at the first event of an ident and lasts anvil_rate_time_unit; the
    first event after it starts a new one. A reply "status" of "1" is a
    malformed request.

    The connections a client opened and did not close are closed for it
    when its connection to anvil ends (an smtpd process that died does
    not leave its clients counted). An ident with nothing open and an
    expired period is forgotten.

    Every anvil_status_update_time (a timer, started with the first
    client), the largest connection count, connection rate, message rate
    and recipient rate seen since the last report are logged with the
    ident and time they were reached, as "statistics: max connection
    rate N/60s for (smtp:ADDR) at TIME", and then forgotten; nothing is
    logged for a period without clients.

SECURITY
    Idents come from smtpd, which takes the address from the socket;
    each is bounded by IDENT_MAX, and the table by how many clients
    connect within one rate period.

SEE ALSO
    mta/common/anvil_clnt.py, mta/smtpd/limits.py, anvil(8)
"""

from __future__ import annotations

import asyncio
import time

from mta import log
from mta.common.attr_proto import serve_requests

IDENT_MAX = 300  # characters in a client ident
ANVIL_STAT_OK = "0"
ANVIL_STAT_BAD = "1"
RATES = ("connect", "message", "recipient", "auth", "newtls")  # the events counted per period


class Entry:
    """The counts of one client ident."""

    __slots__ = ("count", "start", "rates")

    def __init__(self, now: float) -> None:
        self.count = 0
        self.start = now
        self.rates = dict.fromkeys(RATES, 0)


class Counters:
    """Counts per ident, and the largest values seen since the last report."""

    def __init__(self, rate_unit: float) -> None:
        self.unit = max(float(rate_unit), 1.0)
        self.table: dict[str, Entry] = {}
        # what -> (value, ident, when): the largest since the last report
        self.peaks: dict[str, tuple[int, str, float]] = {}

    def _entry(self, ident: str, now: float) -> Entry:
        entry = self.table.get(ident)
        if entry is None:
            entry = self.table[ident] = Entry(now)
        elif now - entry.start >= self.unit:
            entry.start = now
            entry.rates = dict.fromkeys(RATES, 0)
        return entry

    def _peak(self, what: str, value: int, ident: str, now: float) -> None:
        if value > self.peaks.get(what, (0, "", 0.0))[0]:
            self.peaks[what] = (value, ident, now)

    def event(self, what: str, ident: str, now: float) -> int:
        """Count one event of ident; its rate in the current period."""
        entry = self._entry(ident, now)
        entry.rates[what] += 1
        self._peak(what, entry.rates[what], ident, now)
        return entry.rates[what]

    def connect(self, ident: str, now: float) -> tuple[int, int]:
        """A connection opened: (connections open, connection rate)."""
        rate = self.event("connect", ident, now)
        entry = self.table[ident]
        entry.count += 1
        self._peak("count", entry.count, ident, now)
        return entry.count, rate

    def disconnect(self, ident: str, now: float) -> None:
        entry = self.table.get(ident)
        if entry is not None and entry.count > 0:
            entry.count -= 1
            self._forget_if_idle(ident, entry, now)

    def lookup(self, ident: str, now: float) -> tuple[int, dict[str, int]]:
        entry = self.table.get(ident)
        if entry is None:
            return 0, dict.fromkeys(RATES, 0)
        if now - entry.start >= self.unit:
            return entry.count, dict.fromkeys(RATES, 0)
        return entry.count, dict(entry.rates)

    def _forget_if_idle(self, ident: str, entry: Entry, now: float) -> None:
        if entry.count == 0 and now - entry.start >= self.unit:
            del self.table[ident]

    def sweep(self, now: float) -> None:
        """Forget the idents with nothing open and an expired period."""
        for ident, entry in list(self.table.items()):
            self._forget_if_idle(ident, entry, now)

    def report(self) -> list[str]:
        """The statistics lines since the last report; the peaks start again."""
        unit = f"{self.unit:g}s"
        forms = (
            ("connect", "max connection rate %d/" + unit),
            ("count", "max connection count %d"),
            ("message", "max message rate %d/" + unit),
            ("recipient", "max recipient rate %d/" + unit),
            ("auth", "max auth rate %d/" + unit),
            ("newtls", "max new TLS sessions %d/" + unit),
        )
        lines = []
        for what, form in forms:
            if what in self.peaks:
                value, ident, when = self.peaks[what]
                lines.append(
                    f"statistics: {form % value} for ({ident}) at {time.ctime(when)[4:19]}"
                )
        self.peaks = {}
        return lines


class AnvilService:
    """The anvil service: Counters served over attr_proto, statistics logged."""

    def __init__(self, cfg) -> None:
        self.counters = Counters(cfg.get_time("anvil_rate_time_unit"))
        self.report_every = cfg.get_time("anvil_status_update_time")
        self.timer: asyncio.TimerHandle | None = None

    def _arm(self) -> None:
        if self.timer is None and self.report_every > 0:
            self.timer = asyncio.get_running_loop().call_later(self.report_every, self.report)

    def report(self) -> None:
        """Log the statistics, forget idle idents, and arm the timer again."""
        for line in self.counters.report():
            log.info("%s", line)
        self.counters.sweep(time.time())
        self.timer = None
        self._arm()

    def serve(self, msg: dict[str, str], open_here: dict[str, int]) -> dict[str, str]:
        """One request, one reply (see the module docstring); open_here counts
        the connections the requesting client holds open, per ident."""
        request, ident = msg.get("request", ""), msg.get("ident", "")
        if not ident or len(ident) > IDENT_MAX:
            return {"status": ANVIL_STAT_BAD}
        now = time.time()
        c = self.counters
        if request == "connect":
            count, rate = c.connect(ident, now)
            open_here[ident] = open_here.get(ident, 0) + 1
            return {"status": ANVIL_STAT_OK, "count": str(count), "rate": str(rate)}
        if request == "disconnect":
            if open_here.get(ident, 0) > 0:  # only what this client opened
                open_here[ident] -= 1
                c.disconnect(ident, now)
            return {"status": ANVIL_STAT_OK}
        if request in ("message", "recipient", "auth", "newtls"):
            return {"status": ANVIL_STAT_OK, "rate": str(c.event(request, ident, now))}
        if request == "newtls_report":
            return {"status": ANVIL_STAT_OK, "rate": str(c.lookup(ident, now)[1]["newtls"])}
        if request == "lookup":
            count, rates = c.lookup(ident, now)
            return {
                "status": ANVIL_STAT_OK,
                "count": str(count),
                "rate": str(rates["connect"]),
                "message": str(rates["message"]),
                "recipient": str(rates["recipient"]),
                "auth": str(rates["auth"]),
            }
        return {"status": ANVIL_STAT_BAD}

    async def handle_client(self, reader, writer, ctx=None) -> None:
        """Serve one client (an smtpd process) until it closes; then close
        the connections it left open."""
        open_here: dict[str, int] = {}
        self._arm()
        try:
            await serve_requests(
                reader, writer, lambda msg: self.serve(msg, open_here), "anvil request"
            )
        finally:
            now = time.time()
            for ident, n in open_here.items():
                for _ in range(n):
                    self.counters.disconnect(ident, now)
