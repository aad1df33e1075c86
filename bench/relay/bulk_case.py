"""bulk_case - the bulk-sender features' case of the relay benchmark (run.py --bulk)

SYNOPSIS
    bulk = BulkSetup(top)                 # under top: the list, the tables
    main_cf = bulk.main_cf("mta")         # "" for Postfix, which has none of it
    bulk.event_lines()                    # events the run wrote

DESCRIPTION
    mta runs with what a bulk sender switches on, so that their cost
    shows against the plain run of the same invocation (--targets
    mta,mta-bulk) and against Postfix:

      a suppression list (suppression_map) holding SUPPRESSED entries,
        none of them a benchmark recipient: every RCPT TO and every
        recipient qmgr takes in is looked up in it;
      the event log (event_log_file): one JSON line per delivery;
      an egress pool of two sources, 127.0.0.2 and 127.0.0.3 with
        weights 1:1 and a warm-up schedule far above the run's volume,
        so every batch is counted and every connection is bound;
      shaping as shipped (the relay's next hop is a literal [host], so
        no MX look-ups; pools still apply).

    Postfix gets nothing extra: it has no equivalent.

SECURITY
    Files under the benchmark's temporary directory; 127.0.0.1 only.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path

SUPPRESSED = 100_000  # entries in the suppression list


class BulkSetup:
    def __init__(self, top: Path) -> None:
        self.dir = top / "bulk"
        self.dir.mkdir()
        self.events = self.dir / "events.jsonl"
        today = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
        (self.dir / "sources").write_text(
            "ip2 address=127.0.0.2 helo=ip2.load.example\n"
            f"ip3 address=127.0.0.3 helo=ip3.load.example warmup=big start={today}\n"
        )
        self.list_file = self.dir / "suppression"
        self._fill_list()

    def _fill_list(self) -> None:
        from mta.common.kv_store import LmdbStore
        from mta.common.suppress import Entry, SuppressionList

        store = LmdbStore(str(self.list_file) + ".lmdb", 1 << 30)
        sl = SuppressionList(store, {})
        sl.put_many(
            [
                Entry(f"gone{i}@far{i % 97}.example", klass="invalid_mailbox", source="import")
                for i in range(SUPPRESSED)
            ]
        )
        store.close()

    def main_cf(self, target: str) -> str:
        if target == "postfix":
            return ""
        return (
            f"suppression_map = lmdb:{self.list_file}\n"
            f"event_log_file = {self.events}\n"
            f"egress_sources = texthash:{self.dir / 'sources'}\n"
            "egress_pools = inline:{ {bulk = ip2:1, ip3:1} }\n"
            "egress_warmup_schedules = inline:{ {big = 10000000} }\n"
            "egress_default_pool = bulk\n"
            f"egress_state_map = lmdb:{self.dir / 'egress_state'}\n"
        )

    def event_lines(self) -> int:
        if not self.events.exists():
            return 0
        return sum(1 for line in self.events.read_text().splitlines() if json.loads(line))
