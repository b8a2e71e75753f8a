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
reach user space: ARP (all of it, it is small) and IPv6 neighbour
advertisements. Our own outgoing frames are skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ipaddress
import socket
import struct
from collections.abc import Callable
from pathlib import Path

from externalip import log
from externalip.core.addresses import IPAddress
from externalip.net.announce import parse_arp, parse_na

_log = log.get(__name__)

ETH_P_ARP, ETH_P_IPV6 = 0x0806, 0x86DD
SO_ATTACH_FILTER = 26
PACKET_OUTGOING = 4

# Classic BPF: accept Ethernet/IPv6 frames carrying ICMPv6 type 136 (NA)
# without extension headers, drop everything else.
_NA_FILTER = (
    (0x28, 0, 0, 12),      # ldh [12]        ethertype
    (0x15, 0, 5, ETH_P_IPV6),
    (0x30, 0, 0, 20),      # ldb [20]        IPv6 next header
    (0x15, 0, 3, 58),      # ICMPv6
    (0x30, 0, 0, 54),      # ldb [54]        ICMPv6 type
    (0x15, 0, 1, 136),     # neighbour advertisement
    (0x06, 0, 0, 0x40000),  # accept
    (0x06, 0, 0, 0),       # drop
)

# (address, MAC that announced it, interface index)
Listener = Callable[[IPAddress, bytes, int], None]


def _attach(sock: socket.socket, program: tuple[tuple[int, int, int, int], ...]) -> None:
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
    def __init__(self, listener: Listener, own_macs: Callable[[], set[bytes]]) -> None:
        self._listener = listener
        self._own_macs = own_macs
        self._socks: list[socket.socket] = []

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        arp = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
        na = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IPV6))
        _attach(na, _NA_FILTER)
        for sock in (arp, na):
            sock.setblocking(False)
            loop.add_reader(sock.fileno(), self._read, sock)
            self._socks.append(sock)

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
            if seen is not None and seen[1] not in self._own_macs():
                self._listener(seen[0], seen[1], _ifindex(addr))

    def close(self) -> None:
        loop = asyncio.get_running_loop()
        for sock in self._socks:
            with contextlib.suppress(ValueError, OSError):
                loop.remove_reader(sock.fileno())
            sock.close()
        self._socks.clear()


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
