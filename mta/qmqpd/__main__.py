"""python -m mta.qmqpd - the QMQP server, as the master starts it."""

from mta.master.multi_server import run_multi_server
from mta.qmqpd import handle_client

run_multi_server("qmqpd", handle_client)
