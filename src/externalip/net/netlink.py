"""Netlink adapter: the node's links and addresses, and changes to them.

Only this module and its helpers (net.addrcache, net.addrbatch) speak
rtnetlink (pyroute2's AsyncIPRoute for links, never NDB).
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
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pyroute2 import AsyncIPRoute

from externalip.net.addrbatch import ADD, RENEW, Item, deladdr_message, newaddr_message, run_batch
from externalip.net.addrcache import AddressCache, LinkAddress, NetEvent
from externalip.net.kernel import (
    ARPHRD_ETHER,
    IFA_F_NODAD,
    IFF_LOOPBACK,
    IFF_NOARP,
    IFF_UP,
    INFINITY_LIFE,
    PROTO,
)

__all__ = ["INFINITY_LIFE", "PROTO", "Item", "Link", "LinkAddress", "NetEvent", "Netlink",
           "lifetimes"]

# Removing an address that is already gone is not a failure.
_GONE = frozenset({errno.EADDRNOTAVAIL, errno.ENOENT, errno.ENODEV})


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


def lifetimes(lifetime: float) -> tuple[int, int]:
    """(valid_lft, preferred_lft) for an address we hold; 0 means no expiry."""
    valid = INFINITY_LIFE if lifetime <= 0 else max(1, round(lifetime))
    return valid, 0


class Netlink:
    """The node's links (pyroute2, dumped again after a link event), its addresses
    (net.addrcache, kept from notifications) and address requests in batches
    (net.addrbatch).

    Requests are serialised with a lock: one batch in flight keeps the acks
    simple to match, and a batch takes milliseconds.
    """

    def __init__(self) -> None:
        self._ipr: AsyncIPRoute | None = None
        self._lock = asyncio.Lock()
        self._links: dict[int, Link] | None = None
        # Opened now: a socket lives in the network namespace of its creator.
        self._batch = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        self._batch.bind((0, 0))
        self.cache = AddressCache()

    async def _sock(self) -> AsyncIPRoute:
        if self._ipr is None:
            self._ipr = AsyncIPRoute()
        return self._ipr

    def close(self) -> None:
        self._batch.close()
        self.cache.close()
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

    def addresses(self) -> list[LinkAddress]:
        """Every address of every link of this network namespace (from the cache:
        no dump unless notifications were lost)."""
        return self.cache.addresses()

    async def add_many(self, items: list[Item], lifetime: float) -> dict[Item, int]:
        """Add new addresses, marked ours; returns failures (-> errno).

        NLM_F_EXCL: an address configured by someone else since we last looked
        is refused (EEXIST) instead of taken over.
        """
        valid, preferred = lifetimes(lifetime)
        failed = await self._batch_run(items, lambda seq, item: newaddr_message(
            seq, item[0], item[1], valid, preferred, mode=ADD))
        for ifindex, interface in items:
            if (ifindex, interface) not in failed:
                flags = IFA_F_NODAD if interface.version == 6 else 0
                self.cache.learned(LinkAddress(ifindex, interface, PROTO, flags, valid), True)
        return failed

    async def refresh_many(self, items: list[Item], lifetime: float) -> dict[Item, int]:
        """Renew the lifetimes of addresses we hold (NLM_F_REPLACE); returns failures."""
        valid, preferred = lifetimes(lifetime)
        return await self._batch_run(items, lambda seq, item: newaddr_message(
            seq, item[0], item[1], valid, preferred, mode=RENEW))

    async def remove_many(self, items: list[Item]) -> dict[Item, int]:
        """Remove addresses; returns failures, not counting those already gone."""
        failed = await self._batch_run(
            items, lambda seq, item: deladdr_message(seq, item[0], item[1]))
        for ifindex, interface in items:
            if failed.get((ifindex, interface), errno.ENOENT) in _GONE:
                self.cache.learned(LinkAddress(ifindex, interface, PROTO, 0, 0), False)
        return {k: code for k, code in failed.items() if code not in _GONE}

    async def _batch_run(self, items: list[Item],
                         build: Callable[[int, Item], bytes]) -> dict[Item, int]:
        if not items:
            return {}
        async with self._lock:
            # In a thread: the kernel takes the RTNL lock, shared by every
            # namespace of the machine, and a batch may wait on it for a while.
            return await asyncio.to_thread(run_batch, self._batch, items, build)
