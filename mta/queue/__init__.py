"""mta.queue - the mail queue: directory names, queue files, queue ids

SYNOPSIS
    from mta.queue import paths
    paths.QUEUE_NAMES                 # ("maildrop", "incoming", ...)

DESCRIPTION
    paths.py names the queue tree under queue_directory and the modes
    each directory has, as Postfix lays them out. Record encoding, queue
    files and queue ids join it as the queue takes shape.

SECURITY
    Names and constants only; the code that creates directories is in
    mta.cli.postfix (mta check).
"""
