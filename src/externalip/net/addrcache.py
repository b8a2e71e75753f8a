"""The node's addresses, kept from rtnetlink notifications instead of dumped per pass.

A reconcile used to dump every address of the namespace (with 1,000 pod veths
and 5,000 VIPs, tens of milliseconds of pyroute2 decoding per pass, and a pass
per claim change). Now one dump fills the cache when it opens, and
RTM_NEWADDR / RTM_DELADDR / RTM_DELLINK notifications keep it current.

Why reading it is right: for IPv4 the kernel queues the notification of a
change on our listening socket before it acknowledges the request that made
it, and `addresses()` first drains that socket. IPv6 announces a new address
from its DAD work queue, a moment after the ack (even with IFA_F_NODAD), so
the holder also writes its own successful adds and removals through
(`learned`), and a reconcile right after an add does not take the address
for missing. Each notification carries the whole state of its address, so
replaying them in order after the dump ends at the kernel's state. If the
kernel drops notifications (ENOBUFS, our receive buffer overflowed) the next
read dumps again, once.

Messages are decoded by hand (always the same few attributes): our own
lifetime renewals notify too, 5,000 of them per renewal round.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import ipaddress
import socket
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from externalip.core.addresses import IPInterface
from externalip.net.kernel import (
    IFA_F_TENTATIVE,
    INFINITY_LIFE,
    PROTO,
    RTM_DELADDR,
    RTM_DELLINK,
    RTM_NEWADDR,
    RTM_NEWLINK,
)

RTMGRP_LINK, RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR = 0x1, 0x10, 0x100
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_DUMP, NLM_F_DUMP_INTR = 0x1, 0x300, 0x10
RTM_GETADDR = 22
IFA_ADDRESS, IFA_LOCAL, IFA_CACHEINFO, IFA_FLAGS, IFA_PROTO = 1, 2, 6, 8, 11
# Room for the notifications of one batch of 10,000 adds (~1 KiB each in the
# receive buffer) between two drains; beyond that, ENOBUFS and one dump.
RECEIVE_BUFFER = 16 << 20

Key = tuple[int, str]  # (ifindex, "ip/prefix")


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
    """A change on the node. `ours` tells our own changes from the rest."""

    kind: str  # "addr-added", "addr-removed", "link" (ifindex 0: notifications were lost)
    ifindex: int
    address: str = ""
    ours: bool = False


@functools.lru_cache(maxsize=1 << 16)
def _interface(raw: bytes, prefixlen: int) -> IPInterface:
    """Built once per address: our renewals notify every held address each
    round, and ipaddress's constructors were most of decoding them."""
    return ipaddress.ip_interface((ipaddress.ip_address(raw), prefixlen))


def decode_address(data: bytes | memoryview, offset: int, length: int) -> LinkAddress | None:
    """The ifaddrmsg and attributes of one RTM_NEWADDR/RTM_DELADDR message."""
    family, prefixlen, hflags, _scope, index = struct.unpack_from("=BBBBI", data, offset + 16)
    if family not in (socket.AF_INET, socket.AF_INET6):
        return None
    attrs: dict[int, bytes] = {}
    at, end = offset + 24, offset + length
    while at + 4 <= end:
        alen, kind = struct.unpack_from("=HH", data, at)
        if alen < 4:
            break
        attrs[kind] = bytes(data[at + 4:at + alen])
        at += (alen + 3) & ~3
    # IPv4 keeps the local address in IFA_LOCAL (IFA_ADDRESS is the peer on
    # point-to-point links); IPv6 has only IFA_ADDRESS.
    raw = attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS)
    if not raw:
        return None
    flags = struct.unpack("=I", attrs[IFA_FLAGS])[0] if IFA_FLAGS in attrs else hflags
    cache = attrs.get(IFA_CACHEINFO)
    valid = struct.unpack_from("=I", cache, 4)[0] if cache and len(cache) >= 8 else INFINITY_LIFE
    proto = attrs.get(IFA_PROTO, b"")
    return LinkAddress(ifindex=index, interface=_interface(raw, prefixlen),
                       proto=proto[0] if proto else 0,
                       flags=flags, valid_lft=valid)


def messages(data: bytes) -> Iterator[tuple[int, int, int, int]]:
    """(type, flags, offset, length) of each netlink message in data."""
    at = 0
    while at + 16 <= len(data):
        length, kind, flags = struct.unpack_from("=IHH", data, at)
        if length < 16:
            return
        yield kind, flags, at, length
        at += (length + 3) & ~3


class AddressCache:
    """Every address of this network namespace, by (ifindex, interface).

    `on_event` hears each change as it is applied (whoever drains the socket):
    the holder kicks a reconcile or drops its link cache from there.
    """

    def __init__(self) -> None:
        # Opened now: a socket lives in the network namespace of its creator.
        self._listen = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        try:  # beyond net.core.rmem_max; needs CAP_NET_ADMIN, which the agent has
            self._listen.setsockopt(socket.SOL_SOCKET, 33, RECEIVE_BUFFER)  # SO_RCVBUFFORCE
        except OSError:
            self._listen.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        self._listen.bind((0, RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR))
        self._listen.setblocking(False)
        self._dumper = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        self._dumper.bind((0, 0))
        self._addrs: dict[Key, LinkAddress] = {}
        self._stale = True  # the first read dumps
        self.dumps = 0  # how many full dumps (tests and benches read it)
        self.on_event: Callable[[NetEvent], None] = lambda _event: None

    def addresses(self) -> list[LinkAddress]:
        """Every address now: the changes queued so far applied, or a dump if some were lost."""
        self.drain()
        if self._stale:
            self._dump()
        return list(self._addrs.values())

    def learned(self, address: LinkAddress, present: bool) -> None:
        """Our own request succeeded: record it before its notification comes."""
        key = (address.ifindex, str(address.interface))
        if present:
            self._addrs[key] = address
        else:
            self._addrs.pop(key, None)

    def drain(self) -> None:
        """Apply every queued notification (never blocks)."""
        while True:
            try:
                data = self._listen.recv(1 << 20)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                # Notifications were lost: what we have may be wrong in any way.
                self._stale = True
                self.on_event(NetEvent("link", 0))
                continue
            for kind, _flags, at, length in messages(data):
                self._apply(kind, data, at, length)

    def _apply(self, kind: int, data: bytes, at: int, length: int) -> None:
        if kind in (RTM_NEWLINK, RTM_DELLINK):
            index = struct.unpack_from("=i", data, at + 20)[0]
            if kind == RTM_DELLINK:  # its addresses went with it
                self._addrs = {k: a for k, a in self._addrs.items() if k[0] != index}
            self.on_event(NetEvent("link", index))
            return
        if kind not in (RTM_NEWADDR, RTM_DELADDR):
            return
        addr = decode_address(data, at, length)
        if addr is None:
            return
        key = (addr.ifindex, str(addr.interface))
        if kind == RTM_NEWADDR:
            self._addrs[key] = addr
        else:
            self._addrs.pop(key, None)
        self.on_event(NetEvent("addr-added" if kind == RTM_NEWADDR else "addr-removed",
                               addr.ifindex, key[1], addr.ours))

    def _dump(self) -> None:
        """Every address from the kernel, again until a dump was not interrupted."""
        while True:
            self._stale = False
            request = struct.pack("=IHHII", 16 + 8, RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, 1, 0)
            self._dumper.send(request + struct.pack("=BBBBI", socket.AF_UNSPEC, 0, 0, 0, 0))
            found: dict[Key, LinkAddress] = {}
            done = interrupted = False
            while not done:
                data = self._dumper.recv(1 << 20)
                for kind, flags, at, length in messages(data):
                    interrupted |= bool(flags & NLM_F_DUMP_INTR)
                    if kind == NLMSG_DONE:
                        done = True
                    elif kind == NLMSG_ERROR:
                        code = -struct.unpack_from("=i", data, at + 16)[0]
                        raise OSError(code, f"address dump failed: {errno.errorcode.get(code)}")
                    elif kind == RTM_NEWADDR and (addr := decode_address(data, at, length)):
                        found[(addr.ifindex, str(addr.interface))] = addr
            self.dumps += 1
            if not interrupted:
                self._addrs = found
                return

    async def follow(self) -> None:
        """Apply notifications as they arrive, forever (`on_event` hears them)."""
        loop = asyncio.get_running_loop()
        loop.add_reader(self._listen.fileno(), self.drain)
        try:
            await asyncio.Event().wait()
        finally:
            loop.remove_reader(self._listen.fileno())

    def close(self) -> None:
        self._listen.close()
        self._dumper.close()
