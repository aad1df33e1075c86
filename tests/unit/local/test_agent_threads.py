"""Deliveries that start together in a new local process share one agent and one alias table.

Before the lock, each worker thread could build its own agent and open the
alias LMDB file again; py-lmdb refused the second open and the delivery
was deferred with "mail system configuration error".
"""

import mta.local as local
from mta.config import load_config
from mta.local.aliases_file import build_alias_lmdb
from mta.maps import clear_cache
from tests.support.instance import make_instance
from tests.support.race import race

THREADS = 16  # deliveries starting at once
ROUNDS = 30  # new processes simulated (caches emptied)


def test_threads_starting_together_get_one_agent_and_one_alias_table(tmp_path):
    aliases = tmp_path / "aliases"
    aliases.write_text("postmaster: root\n")
    build_alias_lmdb(str(aliases))
    cfg = load_config(str(make_instance(tmp_path, f"alias_maps = lmdb:{aliases}\n")))
    for _ in range(ROUNDS):
        clear_cache()
        local._AGENTS.clear()
        agents, errors = race(lambda: local.agent_for(cfg), THREADS)
        assert errors == []
        assert len(agents) == THREADS and len({id(a) for a in agents}) == 1
        assert agents[0].aliases.lookup("postmaster").value == "root"
    clear_cache()
    local._AGENTS.clear()
