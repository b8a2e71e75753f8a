"""Netlink adapter: the node's links and addresses, and changes to them.

Only this module speaks rtnetlink (through pyroute2's AsyncIPRoute, never NDB).
It marks every address it adds with its own IFA_PROTO value, so that later, in
this process or in a restarted one, "ours" is a fact read from the kernel and
not a guess: an address without the mark is never removed or altered
(DESIGN.md invariant 2). IFA_PROTO needs Linux >= 6.3.

Addresses are added with preferred_lft 0: the kernel then shows them as
`deprecated` and never picks them as a source address or as the address other
node software reads as "the node IP" (kube-vip #1385). They get a finite
valid_lft that the live agent keeps refreshing, so the kernel removes them on
its own once the agent is gone (invariant 1).
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import (
    RTMGRP_IPV4_IFADDR,
    RTMGRP_IPV6_IFADDR,
    RTMGRP_LINK,
)

from externalip.core.addresses import IPInterface
from externalip.net.kernel import (
    ARPHRD_ETHER,
    IFA_F_NODAD,
    IFA_F_TENTATIVE,
    IFF_LOOPBACK,
    IFF_NOARP,
    IFF_UP,
    INFINITY_LIFE,
    PROTO,
    RTM_DELADDR,
    RTM_DELLINK,
    RTM_NEWADDR,
    RTM_NEWLINK,
)
from externalip.net.renew import renew_batch

__all__ = ["INFINITY_LIFE", "PROTO", "AddressExistsError", "Link", "LinkAddress", "NetEvent",
           "Netlink", "lifetimes"]


class AddressExistsError(Exception):
    """The kernel already has this address on this link (we never overwrite it)."""


@dataclass(frozen=True)
class Link:
    index: int
    name: str
    mac: bytes
    flags: int
    kind: int  # ARPHRD_*

    @property
    def up(self) -> bool:
        return bool(self.flags & IFF_UP)

    @property
    def announces(self) -> bool:
        """Whether neighbours learn addresses here by ARP/ND (never on lo, tun, NOARP)."""
        return (
            self.kind == ARPHRD_ETHER
            and not self.flags & (IFF_LOOPBACK | IFF_NOARP)
            and len(self.mac) == 6
        )


@dataclass(frozen=True)
class LinkAddress:
    """One address as the kernel reports it."""

    ifindex: int
    interface: IPInterface
    proto: int
    flags: int
    valid_lft: int  # seconds; INFINITY_LIFE means forever

    @property
    def ours(self) -> bool:
        return self.proto == PROTO

    @property
    def tentative(self) -> bool:
        return bool(self.flags & IFA_F_TENTATIVE)


@dataclass(frozen=True)
class NetEvent:
    """A change on the node. `ours` tells our own refreshes from the rest."""

    kind: str  # "addr-added", "addr-removed", "link"
    ifindex: int
    address: str = ""
    ours: bool = False


def _link(msg: Any) -> Link:
    mac = msg.get("address") or ""
    raw = bytes.fromhex(mac.replace(":", "")) if mac else b""
    return Link(
        index=int(msg["index"]),
        name=str(msg.get("ifname")),
        mac=raw,
        flags=int(msg["flags"]),
        kind=int(msg["ifi_type"]),
    )


def _address(msg: Any) -> LinkAddress | None:
    # IPv4 keeps the local address in IFA_LOCAL (IFA_ADDRESS is the peer on
    # point-to-point links); IPv6 has only IFA_ADDRESS.
    ip = msg.get("local") or msg.get("address")
    if not ip:
        return None
    cache = msg.get("cacheinfo") or {}
    flags = msg.get("flags")  # IFA_FLAGS attribute: the full 32-bit flags
    return LinkAddress(
        ifindex=int(msg["index"]),
        interface=ipaddress.ip_interface(f"{ip}/{msg['prefixlen']}"),
        proto=int(msg.get("proto") or 0),
        flags=int(flags if flags is not None else msg["header"].get("flags", 0)),
        valid_lft=int(cache.get("ifa_valid", INFINITY_LIFE)),
    )


def lifetimes(lifetime: float) -> tuple[int, int]:
    """(valid_lft, preferred_lft) for an address we hold; 0 means no expiry."""
    valid = INFINITY_LIFE if lifetime <= 0 else max(1, round(lifetime))
    return valid, 0


class Netlink:
    """Requests on one rtnetlink socket; `events()` opens its own listening socket.

    Calls are serialised with a lock: pyroute2's async socket matches replies by
    sequence number, but a single in-flight request keeps error handling simple
    and the cost is microseconds.
    """

    def __init__(self) -> None:
        self._ipr: AsyncIPRoute | None = None
        self._lock = asyncio.Lock()
        self._links: dict[int, Link] | None = None
        # Opened now: a socket lives in the network namespace of its creator.
        self._batch = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        self._batch.bind((0, 0))

    async def _sock(self) -> AsyncIPRoute:
        if self._ipr is None:
            self._ipr = AsyncIPRoute()
        return self._ipr

    def close(self) -> None:
        self._batch.close()
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None

    def forget_links(self) -> None:
        """Drop the link cache (on a link event: renamed, added, removed)."""
        self._links = None

    async def links(self) -> dict[int, Link]:
        """Links by index, cached until `forget_links`."""
        if self._links is None:
            async with self._lock:
                ipr = await self._sock()
                msgs = [m async for m in await ipr.link("dump")]
                self._links = {link.index: link for link in map(_link, msgs)}
        return self._links

    async def link_by_name(self, name: str) -> Link | None:
        for link in (await self.links()).values():
            if link.name == name:
                return link
        return None

    async def addresses(self) -> list[LinkAddress]:
        """Every address of every link of this network namespace."""
        async with self._lock:
            ipr = await self._sock()
            msgs = [m async for m in await ipr.addr("dump")]
        return [a for a in map(_address, msgs) if a is not None]

    async def add(self, ifindex: int, interface: IPInterface, lifetime: float) -> None:
        """Add a new address, marked ours. Raises AddressExistsError if it is there already.

        NLM_F_EXCL: if someone configured the same address between our dump and
        this call, the kernel refuses instead of us taking it over.
        """
        await self._newaddr("add", ifindex, interface, lifetime)

    async def refresh(self, ifindex: int, interface: IPInterface, lifetime: float) -> None:
        """Renew the lifetime of an address we hold (NLM_F_REPLACE)."""
        await self._newaddr("replace", ifindex, interface, lifetime)

    async def refresh_many(
        self, items: list[tuple[int, IPInterface]], lifetime: float
    ) -> dict[tuple[int, IPInterface], int]:
        """Renew many lifetimes in a few system calls; returns failures (-> errno).

        With 1,000 addresses renewed every lifetime/3, one pyroute2 request per
        address (~0.4 ms of CPU each) dominated the idle agent's CPU. These
        messages are always the same shape, so they are packed by hand, sent
        in batches on a plain netlink socket and their acks read back.
        """
        if not items:
            return {}
        valid, preferred = lifetimes(lifetime)
        async with self._lock:
            return renew_batch(self._batch, items, valid, preferred)

    async def _newaddr(
        self, command: str, ifindex: int, interface: IPInterface, lifetime: float
    ) -> None:
        valid, preferred = lifetimes(lifetime)
        kwargs: dict[str, Any] = {
            "index": ifindex,
            "address": str(interface.ip),
            "prefixlen": interface.network.prefixlen,
            "proto": PROTO,
            "valid_lft": valid,
            "preferred_lft": preferred,
        }
        if interface.version == 6:
            # No duplicate address detection: a VIP moves between nodes, and a
            # tentative address neither answers nor can be announced for ~1 s.
            kwargs["flags"] = IFA_F_NODAD
        async with self._lock:
            ipr = await self._sock()
            try:
                await ipr.addr(command, **kwargs)
            except NetlinkError as exc:
                if exc.code == errno.EEXIST:
                    raise AddressExistsError(f"{interface} on ifindex {ifindex}") from exc
                raise

    async def remove(self, ifindex: int, interface: IPInterface) -> bool:
        """Remove an address; False if it was already gone."""
        async with self._lock:
            ipr = await self._sock()
            try:
                await ipr.addr(
                    "del",
                    index=ifindex,
                    address=str(interface.ip),
                    prefixlen=interface.network.prefixlen,
                )
            except NetlinkError as exc:
                if exc.code in (errno.EADDRNOTAVAIL, errno.ENOENT, errno.ENODEV):
                    return False
                raise
        return True

    async def events(self) -> AsyncIterator[NetEvent]:
        """Address and link changes, from a socket of their own, forever.

        Yields nothing but events; a caller that needs a full picture dumps
        again (we use the events only as a trigger). If the kernel drops
        messages (ENOBUFS), a "link" event on ifindex 0 asks for a full resync.
        """
        ipr = AsyncIPRoute()
        try:
            await ipr.bind(RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR)
            while True:
                try:
                    async for msg in ipr.get():
                        event = _event(msg)
                        if event is not None:
                            yield event
                except OSError as exc:
                    if exc.errno != errno.ENOBUFS:
                        raise
                    yield NetEvent("link", 0)
        finally:
            ipr.close()


def _event(msg: Any) -> NetEvent | None:
    kind = msg["header"]["type"]
    if kind in (RTM_NEWLINK, RTM_DELLINK):
        return NetEvent("link", int(msg["index"]))
    if kind in (RTM_NEWADDR, RTM_DELADDR):
        addr = _address(msg)
        if addr is None:
            return None
        return NetEvent(
            "addr-added" if kind == RTM_NEWADDR else "addr-removed",
            addr.ifindex,
            str(addr.interface),
            addr.ours,
        )
    return None
