"""Hear other nodes announce our addresses (data-plane fencing).

When a node is cut off from the API, the scheduler moves its claims once its
Lease lapses, but the cut-off agent cannot learn that through the API. It can
learn it on the wire: the new holder announces the address (gratuitous ARP,
unsolicited NA) from another MAC. An agent that is missing its Lease
renewals and hears that yields the address, so a partition ends in one
holder, while a whole-API outage (nobody takes anything over) keeps every
address up. This is IPv4 address conflict detection (RFC 5227) used as a
fence.

Two packet sockets, each with a kernel filter so only the frames we need
reach user space: ARP frames whose sender or target is an address we hold,
and IPv6 neighbour advertisements for one of them. A node with hundreds of
pod veths may hear thousands of ARP frames a second; the filter is rebuilt
whenever the held addresses change (`watch`), so the cost of the rest stays
in the kernel. Our own outgoing frames are skipped. Our MACs are cached and
refreshed on netlink link events (`OwnMacs.forget`), not read per frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ipaddress
import socket
import struct
from collections.abc import Callable, Collection
from pathlib import Path

from externalip import log
from externalip.core.addresses import IPAddress
from externalip.net.announce import parse_arp, parse_na

_log = log.get(__name__)

ETH_P_ARP, ETH_P_IPV6 = 0x0806, 0x86DD
SO_ATTACH_FILTER = 26
PACKET_OUTGOING = 4

Insn = tuple[int, int, int, int]
LD_W, JEQ, RET = 0x20, 0x15, 0x06
ACCEPT, DROP = (RET, 0, 0, 0x40000), (RET, 0, 0, 0)
BPF_MAXINSNS = 4096
ARP_SPA, ARP_TPA, NA_TARGET = 28, 38, 62  # offsets in the Ethernet frame

# Classic BPF: Ethernet/IPv6 frames carrying ICMPv6 type 136 (NA) without
# extension headers, everything else dropped: alone (_NA_FILTER) or followed
# by the address checks (_NA_PREFIX + na_filter).
_NA_FILTER: tuple[Insn, ...] = (
    (0x28, 0, 0, 12),      # ldh [12]        ethertype
    (JEQ, 0, 5, ETH_P_IPV6),
    (0x30, 0, 0, 20),      # ldb [20]        IPv6 next header
    (JEQ, 0, 3, 58),       # ICMPv6
    (0x30, 0, 0, 54),      # ldb [54]        ICMPv6 type
    (JEQ, 0, 1, 136),      # neighbour advertisement
    ACCEPT,
    DROP,
)
_NA_PREFIX: tuple[Insn, ...] = (
    (0x28, 0, 0, 12),
    (JEQ, 0, 4, ETH_P_IPV6),
    (0x30, 0, 0, 20),
    (JEQ, 0, 2, 58),
    (0x30, 0, 0, 54),
    (JEQ, 1, 0, 136),      # an NA: on to the address checks
    DROP,
)


def _accept_if(offset: int, value: bytes) -> list[Insn]:
    """Accept when the bytes at `offset` are `value`; fall through otherwise."""
    words = struct.unpack(f"!{len(value) // 4}I", value)
    out: list[Insn] = []
    for j, word in enumerate(words):
        out.append((LD_W, 0, 0, offset + 4 * j))
        out.append((JEQ, 0, 2 * (len(words) - 1 - j) + 1, word))
    out.append(ACCEPT)
    return out


def arp_filter(addresses: Collection[IPAddress]) -> tuple[Insn, ...] | None:
    """ARP frames whose sender or target is one of `addresses`; None when the
    program would be too long for the kernel (then user space filters)."""
    program = [insn for ip in sorted(a for a in addresses if a.version == 4)
               for offset in (ARP_SPA, ARP_TPA) for insn in _accept_if(offset, ip.packed)]
    return (*program, DROP) if len(program) < BPF_MAXINSNS else None


def na_filter(addresses: Collection[IPAddress]) -> tuple[Insn, ...] | None:
    """Neighbour advertisements for one of `addresses` (None: too long, as above)."""
    program = [insn for ip in sorted(a for a in addresses if a.version == 6)
               for insn in _accept_if(NA_TARGET, ip.packed)]
    if len(program) + len(_NA_PREFIX) >= BPF_MAXINSNS:
        return None
    return (*_NA_PREFIX, *program, DROP)

# (address, MAC that announced it, interface index)
Listener = Callable[[IPAddress, bytes, int], None]


def attach_filter(sock: socket.socket, program: tuple[Insn, ...]) -> None:
    code = b"".join(struct.pack("HBBI", *insn) for insn in program)
    buf = ctypes.create_string_buffer(code)
    fprog = struct.pack("HL", len(program), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def claimed_address(frame: bytes) -> tuple[IPAddress, bytes] | None:
    """(address, MAC) that a frame says owns the address, or None."""
    arp = parse_arp(frame)
    if arp is not None:
        ip = arp["sender_ip"]
        mac = arp["sender_mac"]
        if isinstance(ip, ipaddress.IPv4Address) and isinstance(mac, bytes) and int(ip):
            return ip, mac
        return None
    na = parse_na(frame)
    if na is not None:
        target, mac = na["target"], na["target_mac"] or na["eth_src"]
        if isinstance(target, ipaddress.IPv6Address) and isinstance(mac, bytes):
            return target, mac
    return None


class ConflictWatcher:
    """Tells `listener` when a foreign MAC claims one of the watched addresses."""

    def __init__(self, listener: Listener, own_macs: Callable[[], set[bytes]]) -> None:
        self._listener = listener
        self._own_macs = own_macs
        self._socks: list[socket.socket] = []
        self._arp: socket.socket | None = None
        self._na: socket.socket | None = None
        self._addresses: frozenset[IPAddress] = frozenset()

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._arp = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
        self._na = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IPV6))
        self._filter()
        for sock in (self._arp, self._na):
            sock.setblocking(False)
            loop.add_reader(sock.fileno(), self._read, sock)
            self._socks.append(sock)

    def watch(self, addresses: Collection[IPAddress]) -> None:
        """Listen for these addresses only (the ones held); cheap when unchanged."""
        new = frozenset(addresses)
        if new != self._addresses:
            self._addresses = new
            self._filter()

    def _filter(self) -> None:
        if self._arp is not None:
            _attach(self._arp, arp_filter(self._addresses), (ACCEPT,))
        if self._na is not None:
            _attach(self._na, na_filter(self._addresses), _NA_FILTER)

    def _read(self, sock: socket.socket) -> None:
        for _ in range(64):  # bounded per wake-up
            try:
                frame, addr = sock.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                _log.warning("conflict watcher read failed", error=str(exc))
                return
            if addr[2] == PACKET_OUTGOING:
                continue
            seen = claimed_address(frame)
            # the set check matters only when the kernel filter overflowed
            if seen is not None and seen[0] in self._addresses \
                    and seen[1] not in self._own_macs():
                self._listener(seen[0], seen[1], _ifindex(addr))

    def close(self) -> None:
        loop = asyncio.get_running_loop()
        for sock in self._socks:
            with contextlib.suppress(ValueError, OSError):
                loop.remove_reader(sock.fileno())
            sock.close()
        self._socks.clear()


def _attach(sock: socket.socket, exact: tuple[Insn, ...] | None,
            fallback: tuple[Insn, ...]) -> None:
    """The exact filter, or the fallback (user space checks the address) when
    the kernel refuses it: a socket's filter is charged to net.core.optmem_max,
    and a few hundred addresses already exceed it (ENOMEM), which used to fail
    every reconcile of a node holding that many."""
    if exact is not None:
        try:
            attach_filter(sock, exact)
        except OSError as exc:
            _log.debug("kernel filter refused; filtering in user space", error=str(exc),
                       instructions=len(exact))
        else:
            return
    attach_filter(sock, fallback)


def _ifindex(addr: tuple[object, ...]) -> int:
    try:
        return socket.if_nametoindex(str(addr[0]))
    except OSError:
        return 0


def own_macs() -> set[bytes]:
    """MAC addresses of this node's interfaces (a foreign MAC is another node)."""
    macs = set()
    for _, name in socket.if_nameindex():
        with contextlib.suppress(OSError, ValueError):
            text = Path(f"/sys/class/net/{name}/address").read_text().strip()
            macs.add(bytes.fromhex(text.replace(":", "")))
    return macs


class OwnMacs:
    """`own_macs()` read once and again only after a link event (`forget`):
    reading sysfs for every link on every frame cost 1.9 ms per frame with
    100 links."""

    def __init__(self, read: Callable[[], set[bytes]] = own_macs) -> None:
        self._read = read
        self._macs: set[bytes] | None = None

    def __call__(self) -> set[bytes]:
        if self._macs is None:
            self._macs = self._read()
        return self._macs

    def forget(self) -> None:
        self._macs = None
