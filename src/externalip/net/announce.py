"""Telling the L2 segment where an address lives: gratuitous ARP and unsolicited NA.

The kernel does not announce a new secondary address by itself, so switches
and neighbours keep sending to the old holder until their caches expire. We
send, on every add and again a few times over the next seconds (one frame may
be lost, a switch port may still be learning):
- IPv4: an ARP request and an ARP reply with sender = target = the VIP and the
  link's MAC, broadcast (what arping -U / -A send; some stacks honour only one);
- IPv6: a neighbour advertisement to ff02::1, Override set, with the target
  link-layer address option, hop limit 255 (RFC 4861 7.2.6).
Frames are built by pure functions (tested alone); the sockets are the
standard library's AF_PACKET and raw ICMPv6.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import socket
import struct
from collections.abc import Callable, Sequence

from externalip.net.netlink import Link

ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD
BROADCAST = b"\xff" * 6
ARP_REQUEST, ARP_REPLY = 1, 2
ND_NEIGHBOR_ADVERT = 136
NA_FLAG_OVERRIDE = 0x20000000
ALL_NODES = "ff02::1"

# Seconds after the add at which we (re)send; first one immediately.
SCHEDULE: tuple[float, ...] = (0.0, 0.5, 1.5, 3.0)


def arp_frame(mac: bytes, ip: ipaddress.IPv4Address, op: int) -> bytes:
    """An Ethernet broadcast frame carrying a gratuitous ARP request or reply."""
    eth = BROADCAST + mac + struct.pack("!H", ETH_P_ARP)
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, op) + mac + ip.packed + BROADCAST + ip.packed
    return eth + arp


def na_message(mac: bytes, ip: ipaddress.IPv6Address) -> bytes:
    """ICMPv6 unsolicited neighbour advertisement; the kernel fills the checksum."""
    header = struct.pack("!BBHI", ND_NEIGHBOR_ADVERT, 0, 0, NA_FLAG_OVERRIDE)
    option = struct.pack("!BB", 2, 1) + mac  # target link-layer address, 8 bytes
    return header + ip.packed + option


class Pacer:
    """At most `rate` announcements per second over all addresses (0: no limit).

    A switch with Dynamic ARP Inspection shuts a port that sends more than 15
    ARP packets per second by default; a node taking over thousands of
    addresses would send that many in one burst. Paced, the last address is
    announced later, and the port stays up.
    """

    def __init__(self, rate: float = 0.0) -> None:
        self._gap = 1.0 / rate if rate > 0 else 0.0
        self._next = 0.0

    async def slot(self) -> None:
        if not self._gap:
            return
        now = asyncio.get_running_loop().time()
        at = max(now, self._next)
        self._next = at + self._gap
        if at > now:
            await asyncio.sleep(at - now)


class Announcer:
    """Sends announcements; per (link, ip) at most one schedule runs at a time."""

    def __init__(
        self,
        schedule: Sequence[float] = SCHEDULE,
        on_sent: Callable[[int], None] | None = None,
        on_error: Callable[[OSError], None] | None = None,
        rate: float = 0.0,
        on_first: Callable[[ipaddress.IPv4Address | ipaddress.IPv6Address, float], None]
        | None = None,
    ) -> None:
        self._pacer = Pacer(rate)
        # after a burst's first announcement: (address, seconds since it was asked for)
        self._on_first = on_first or (lambda _ip, _waited: None)
        self._schedule = tuple(schedule)
        self._on_sent = on_sent or (lambda _version: None)
        self._on_error = on_error or (lambda _exc: None)
        self._tasks: dict[tuple[int, str], asyncio.Task[None]] = {}
        # Opened now, not on first use: a socket belongs to the network
        # namespace of the thread that creates it, and that is this one.
        self._arp: socket.socket | None = None
        self._icmp6: socket.socket | None = None
        self._arp = self._arp_socket()
        self._icmp6 = self._icmp6_socket()

    def announce(self, link: Link, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
        """Start (or restart) the burst for this address; no-op where ARP/ND is not spoken."""
        if not link.announces:
            return
        key = (link.index, str(ip))
        self.withdraw(link.index, ip)
        task = asyncio.get_running_loop().create_task(self._burst(link, ip))
        self._tasks[key] = task
        task.add_done_callback(functools.partial(self._done, key))

    def _done(self, key: tuple[int, str], task: asyncio.Task[None]) -> None:
        if self._tasks.get(key) is task:
            del self._tasks[key]

    def withdraw(self, ifindex: int, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
        """Stop a running burst: the address is no longer ours to announce."""
        task = self._tasks.pop((ifindex, str(ip)), None)
        if task is not None:
            task.cancel()

    async def _burst(
        self, link: Link, ip: ipaddress.IPv4Address | ipaddress.IPv6Address
    ) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        first = True
        for offset in self._schedule:
            await asyncio.sleep(max(0.0, start + offset - loop.time()))
            await self._pacer.slot()
            try:
                self.send(link, ip)
            except OSError as exc:  # link gone or down: the next reconcile sorts it out
                self._on_error(exc)
                continue
            if first:  # the moment clients can learn the new MAC
                first = False
                self._on_first(ip, loop.time() - start)

    def send(self, link: Link, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
        """One announcement now. Errors (link gone, down) are left to the caller's log."""
        if not link.announces:
            return
        if isinstance(ip, ipaddress.IPv4Address):
            sock = self._arp_socket()
            for op in (ARP_REQUEST, ARP_REPLY):
                sock.sendto(arp_frame(link.mac, ip, op), (link.name, ETH_P_ARP))
        else:
            pktinfo = ip.packed + struct.pack("@I", link.index)  # struct in6_pktinfo
            self._icmp6_socket().sendmsg(
                [na_message(link.mac, ip)],
                [(socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, pktinfo)],
                0,
                (ALL_NODES, 0, 0, link.index),
            )
        self._on_sent(ip.version)

    def _arp_socket(self) -> socket.socket:
        if self._arp is None:
            self._arp = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
            # We only send; a zero-size receive buffer keeps the kernel from
            # queueing every ARP frame of the segment for us.
            self._arp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 0)
        return self._arp

    def _icmp6_socket(self) -> socket.socket:
        if self._icmp6 is None:
            sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
            # Receivers drop ND messages whose hop limit is not 255 (RFC 4861).
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
            # Filter out everything on receive: this socket only sends.
            icmp6_filter = 1  # ICMP6_FILTER (linux/icmpv6.h); a set bit blocks a type
            sock.setsockopt(socket.IPPROTO_ICMPV6, icmp6_filter, b"\xff" * 32)
            self._icmp6 = sock
        return self._icmp6

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for sock in (self._arp, self._icmp6):
            if sock is not None:
                sock.close()
        self._arp = self._icmp6 = None

    @property
    def pending(self) -> int:
        return len(self._tasks)


# Decoders, for tests and diagnostics (capture on a client, check what we sent).


def parse_arp(frame: bytes) -> dict[str, object] | None:
    """An Ethernet ARP frame as fields, or None if it is not one."""
    if len(frame) < 42 or struct.unpack_from("!H", frame, 12)[0] != ETH_P_ARP:
        return None
    op = struct.unpack_from("!H", frame, 20)[0]
    return {
        "eth_src": frame[6:12],
        "eth_dst": frame[0:6],
        "op": op,
        "sender_mac": frame[22:28],
        "sender_ip": ipaddress.IPv4Address(frame[28:32]),
        "target_mac": frame[32:38],
        "target_ip": ipaddress.IPv4Address(frame[38:42]),
    }


def parse_na(frame: bytes) -> dict[str, object] | None:
    """An Ethernet/IPv6 neighbour advertisement as fields, or None."""
    if len(frame) < 14 + 40 + 24 or struct.unpack_from("!H", frame, 12)[0] != ETH_P_IPV6:
        return None
    ip6 = frame[14:54]
    if ip6[6] != socket.IPPROTO_ICMPV6 or frame[54] != ND_NEIGHBOR_ADVERT:
        return None
    flags = struct.unpack_from("!I", frame, 58)[0]
    out: dict[str, object] = {
        "eth_src": frame[6:12],
        "src": ipaddress.IPv6Address(ip6[8:24]),
        "dst": ipaddress.IPv6Address(ip6[24:40]),
        "hop_limit": ip6[7],
        "override": bool(flags & NA_FLAG_OVERRIDE),
        "solicited": bool(flags & 0x40000000),
        "target": ipaddress.IPv6Address(frame[62:78]),
        "target_mac": b"",
    }
    options = frame[78:]
    while len(options) >= 8 and options[1]:
        if options[0] == 2:
            out["target_mac"] = options[2:8]
        options = options[options[1] * 8 :]
    return out
