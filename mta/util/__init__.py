"""mta.util - helpers that know nothing about mail

SYNOPSIS
    from mta.util.progress import Progress

DESCRIPTION
    Small utilities shared by commands and services: progress display
    for long-running commands and the like. Nothing here imports other
    mta packages.

SECURITY
    Library code.
"""
