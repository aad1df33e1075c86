"""mta.proxymap - the proxymap service: table lookups on behalf of other processes

SYNOPSIS
    from mta.proxymap.server import handle_client
    await handle_client(reader, writer, ctx)      # ctx.cfg is the Config

DESCRIPTION
    server.py answers "proxy:TYPE:NAME" lookups from mta processes over
    private/proxymap, so that tables behind a chroot or with many
    readers are opened once. __main__.py runs it under the service
    framework of mta.master.

SECURITY
    Runs unprivileged as mail_owner; opens only the tables that
    proxy_read_maps lists.
"""
