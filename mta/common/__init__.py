"""mta.common - mail code shared by services and commands

SYNOPSIS
    from mta.common.addr_find import find_address, find_domain
    from mta.common.match_list import DomainList, AddrList
    from mta.common import attr_proto

DESCRIPTION
    The layer Postfix calls "global": lookup order for addresses and
    domains, match lists (mydestination, mynetworks ...), the framing of
    requests between mta processes. It may import mta.util and mta.maps,
    never a service.

SECURITY
    Library code; sees whatever its callers pass.
"""
