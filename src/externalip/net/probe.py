"""Is an address free on the segment? Asked before it is first placed.

An address another host already uses on the LAN must not be added: ARP on
the segment would then resolve it to either host (issue 12, item 11; MetalLB
issue 364). Before a claim's address is placed for the first time, the agent
asks the segment:
- IPv4: an ARP probe (RFC 5227 2.1.1): a broadcast request with sender IP
  0.0.0.0 and our MAC, target the address. A host holding it answers (Linux
  replies to probes); another host probing the same address at the same time
  sends the same request with the same target, which also counts.
- IPv6: duplicate address detection (RFC 4862 5.4): a neighbour solicitation
  from :: to the address's solicited-node multicast group. A host holding it
  answers with a neighbour advertisement to ff02::1.
Two probes, `window` seconds of listening in all (0.2 s): a takeover never
probes (the address is ours already), so failover pays nothing for this.
Frames are built and read by pure functions; the sockets are AF_PACKET.
"""

from __future__ import annotations

import asyncio
import ipaddress
import select
import socket
import struct
import time
from collections.abc import Collection

from externalip.core.addresses import IPAddress
from externalip.net.announce import ARP_REQUEST, BROADCAST, ETH_P_ARP, ETH_P_IPV6, parse_arp
from externalip.net.conflict import claimed_address

ND_NEIGHBOR_SOLICIT = 135
PACKET_OUTGOING = 4
ROUNDS = 2


def arp_probe(mac: bytes, ip: ipaddress.IPv4Address) -> bytes:
    """A broadcast ARP probe for `ip`: sender IP 0.0.0.0, target MAC zero."""
    eth = BROADCAST + mac + struct.pack("!H", ETH_P_ARP)
    return eth + struct.pack("!HHBBH", 1, 0x0800, 6, 4, ARP_REQUEST) + mac + bytes(4) \
        + bytes(6) + ip.packed


def solicited_node(ip: ipaddress.IPv6Address) -> ipaddress.IPv6Address:
    return ipaddress.IPv6Address(b"\xff\x02" + bytes(9) + b"\x01\xff" + ip.packed[13:])


def dad_probe(mac: bytes, ip: ipaddress.IPv6Address) -> bytes:
    """A DAD neighbour solicitation for `ip` from ::, in an Ethernet frame."""
    group = solicited_node(ip)
    icmp = struct.pack("!BBHI", ND_NEIGHBOR_SOLICIT, 0, 0, 0) + ip.packed
    pseudo = bytes(16) + group.packed + struct.pack("!I", len(icmp)) + bytes(3) + b"\x3a"
    icmp = icmp[:2] + struct.pack("!H", _checksum(pseudo + icmp)) + icmp[4:]
    header = struct.pack("!IHBB", 0x60000000, len(icmp), socket.IPPROTO_ICMPV6, 255) \
        + bytes(16) + group.packed
    return b"\x33\x33" + group.packed[12:] + mac + struct.pack("!H", ETH_P_IPV6) + header + icmp


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return int(~total & 0xFFFF)


def _probe_frame(mac: bytes, ip: IPAddress) -> bytes:
    if isinstance(ip, ipaddress.IPv4Address):
        return arp_probe(mac, ip)
    return dad_probe(mac, ip)


def foreign_claim(frame: bytes, candidates: Collection[IPAddress],
                  own: Collection[bytes]) -> tuple[IPAddress, bytes] | None:
    """(address, MAC) if this frame shows another host using or probing a candidate."""
    claimed = claimed_address(frame)  # it answers for it, or announces it
    if claimed is not None:
        return claimed if claimed[0] in candidates and claimed[1] not in own else None
    arp = parse_arp(frame)  # it probes the same address at the same time
    if arp is not None and arp["target_ip"] in candidates and arp["sender_mac"] not in own:
        return arp["target_ip"], arp["sender_mac"]  # type: ignore[return-value]
    return None


async def probe(link: str, addresses: Collection[IPAddress],
                window: float = 0.2) -> dict[IPAddress, bytes]:
    """The addresses another host on `link` uses, with its MAC (empty: all free).

    Runs in a thread (blocking sockets); the sockets are opened there, so the
    caller's thread must be in the node's network namespace (as the agent's
    process is)."""
    if not addresses:
        return {}
    return await asyncio.to_thread(probe_now, link, tuple(addresses), window)


def probe_now(link: str, addresses: Collection[IPAddress],
              window: float = 0.2) -> dict[IPAddress, bytes]:
    """`probe`, blocking, with sockets in the calling thread's network namespace."""
    socks: list[socket.socket] = []
    found: dict[IPAddress, bytes] = {}
    try:
        frames: list[tuple[socket.socket, bytes]] = []
        for proto, version in ((ETH_P_ARP, 4), (ETH_P_IPV6, 6)):
            mine = [a for a in addresses if a.version == version]
            if not mine:
                continue
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(proto))
            socks.append(sock)
            sock.bind((link, proto))
            mac = sock.getsockname()[4]
            frames += [(sock, _probe_frame(mac, a)) for a in mine]
        own = {s.getsockname()[4] for s in socks}
        for _ in range(ROUNDS):
            for sock, frame in frames:
                sock.send(frame)
            _listen(socks, set(addresses) - set(found), own, found,
                    time.monotonic() + window / ROUNDS)
    finally:
        for sock in socks:
            sock.close()
    return found


def _listen(socks: list[socket.socket], candidates: set[IPAddress], own: set[bytes],
            found: dict[IPAddress, bytes], deadline: float) -> None:
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select(socks, [], [], left)
        for sock in ready:
            frame, meta = sock.recvfrom(2048)
            if meta[2] == PACKET_OUTGOING:
                continue
            hit = foreign_claim(frame, candidates, own)
            if hit is not None:
                found.setdefault(hit[0], hit[1])
