"""Addresses that must never be handed out or put on an interface. Pure.

An External IP becomes a real address on a node's interface and is announced
on the segment. Some addresses must never get there: loopback and
unspecified addresses break the node's own stack, multicast and broadcast
addresses are not unicast at all, link-local addresses belong to one link and
the kernel already manages them, and 0.0.0.0/8 and 240.0.0.0/4 are reserved
(no stack routes them as host addresses). The network and broadcast
addresses of a node's own subnet would answer for the whole subnet.

Three layers refuse them (docs/security.md has the table): pool validation,
the scheduler (pools skip them, requests get a Warning Event) and, as the
last line, the agent's address plan (core.holding). This module is the one
list all three use.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable

from externalip.core.addresses import IPAddress, IPInterface

# (network, why), first match wins; also the table in docs/security.md.
_SPECIAL: tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...] = (
    (ipaddress.ip_network("0.0.0.0/8"), "is in 0.0.0.0/8 ('this network', unspecified)"),
    (ipaddress.ip_network("127.0.0.0/8"), "is a loopback address"),
    (ipaddress.ip_network("169.254.0.0/16"), "is a link-local address"),
    (ipaddress.ip_network("224.0.0.0/4"), "is a multicast address"),
    (ipaddress.ip_network("255.255.255.255/32"), "is the limited broadcast address"),
    (ipaddress.ip_network("240.0.0.0/4"), "is in the reserved range 240.0.0.0/4"),
    (ipaddress.ip_network("::/128"), "is the unspecified address"),
    (ipaddress.ip_network("::1/128"), "is the loopback address"),
    (ipaddress.ip_network("::ffff:0:0/96"), "is an IPv4-mapped address"),
    (ipaddress.ip_network("fe80::/10"), "is a link-local address"),
    (ipaddress.ip_network("ff00::/8"), "is a multicast address"),
)


@functools.lru_cache(maxsize=1 << 17)  # every pass asks about every held address
def special(ip: IPAddress) -> str:
    """Why `ip` may never be used as a Service address, or "" if it may.
    (Cached: an agent asks it for each of its thousands of addresses on every pass.)"""
    for network, why in _SPECIAL:
        if ip.version == network.version and ip in network:
            return f"{ip} {why}"
    return ""


def special_ranges(version: int) -> list[tuple[int, int]]:
    """The special networks of one family as inclusive integer ranges, sorted."""
    return sorted((int(n.network_address), int(n.broadcast_address))
                  for n, _ in _SPECIAL if n.version == version)


def subnet_edge(ip: IPAddress, own: Iterable[IPInterface]) -> str:
    """Why `ip` is the network or broadcast address of one of the node's own
    subnets (`own`: the node's addresses with their prefix), or "".

    Only subnets with room for hosts count (an IPv4 /31 or /32 has no
    network or broadcast address; RFC 3021); for IPv6 the network address is
    the subnet-router anycast address (RFC 4291), and there is no broadcast.
    """
    for interface in own:
        net = interface.network
        if net.version != ip.version:
            continue
        if net.version == 4 and net.prefixlen <= 30:
            if ip == net.network_address:
                return f"{ip} is the network address of this node's subnet {net}"
            if ip == net.broadcast_address:
                return f"{ip} is the broadcast address of this node's subnet {net}"
        if net.version == 6 and net.prefixlen <= 126 and ip == net.network_address:
            return f"{ip} is the subnet-router anycast address of this node's subnet {net}"
    return ""
