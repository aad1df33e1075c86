"""python -m mta.dnsblog - the dnsblog service process, as the master starts it."""

from mta.dnsblog.server import handle_client
from mta.master.multi_server import run_multi_server

DNSBLOG_BUSY_AT = 1000  # queries at once before the process tells the master it is busy

run_multi_server("dnsblog", handle_client, busy_at=DNSBLOG_BUSY_AT)
