"""python -m mta.postscreen - the postscreen service, as the master starts it."""

from mta.postscreen.server import main

main()
