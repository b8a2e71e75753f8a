"""The conflict watcher's kernel filters and MAC cache (issue 12, item 4), in
network namespaces: frames not about our addresses never reach user space."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import struct
from collections.abc import Iterator

import pytest

from externalip.core.addresses import IPAddress
from externalip.net.announce import arp_frame
from externalip.net.conflict import (
    ETH_P_ARP,
    ConflictWatcher,
    OwnMacs,
    arp_filter,
    attach_filter,
    own_macs,
)
from externalip_lab.netns import NetnsSet, entered

pytestmark = pytest.mark.netns
FOREIGN = bytes.fromhex("020000000099")
V4 = ipaddress.IPv4Address


class Pair:
    def __init__(self, ns: NetnsSet, prefix: str) -> None:
        self.node, self.client = ns.namespace("node"), ns.namespace("client")
        self.dev, self.cdev = f"{prefix}n", f"{prefix}c"
        ns.veth(self.node, self.dev, self.client, self.cdev)
        with entered(self.client):
            self.sender = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
            self.sender.bind((self.cdev, 0))

    def arp(self, sender: str, target: str) -> None:
        frame = arp_frame(FOREIGN, V4(sender), 1)
        self.sender.send(frame[:38] + V4(target).packed + frame[42:])


@pytest.fixture
def pair(unique: str) -> Iterator[Pair]:
    with NetnsSet(unique) as ns:
        p = Pair(ns, unique)
        try:
            yield p
        finally:
            p.sender.close()


async def until_heard(heard: list[IPAddress]) -> None:
    for _ in range(20):
        await asyncio.sleep(0.05)
        if heard:
            return


def received(sock: socket.socket) -> list[tuple[IPAddress, IPAddress]]:
    out = []
    sock.settimeout(0.5)
    while True:
        try:
            frame = sock.recv(2048)
        except TimeoutError:
            return out
        out.append((V4(frame[28:32]), V4(frame[38:42])))


def test_the_arp_filter_passes_only_frames_about_our_addresses(pair: Pair) -> None:
    with entered(pair.node):
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
    try:
        sock.bind((pair.dev, 0))
        program = arp_filter({V4("192.0.2.50"), V4("192.0.2.51"),
                              ipaddress.IPv6Address("2001:db8::50")})
        assert program is not None
        attach_filter(sock, program)
        received(sock)  # whatever arrived before the filter
        pair.arp("192.0.2.50", "192.0.2.50")  # a gratuitous ARP for ours
        pair.arp("192.0.2.99", "192.0.2.98")  # about others: dropped in the kernel
        pair.arp("192.0.2.99", "192.0.2.51")  # asks for ours
        pair.arp("198.51.100.1", "198.51.100.2")
        assert received(sock) == [(V4("192.0.2.50"), V4("192.0.2.50")),
                                  (V4("192.0.2.99"), V4("192.0.2.51"))]
        # an empty set passes nothing; too many addresses fall back to user space
        attach_filter(sock, arp_filter(set()) or ())
        pair.arp("192.0.2.50", "192.0.2.50")
        assert received(sock) == []
        assert arp_filter({V4(f"10.0.{i // 256}.{i % 256}") for i in range(1000)}) is None
    finally:
        sock.close()


async def test_the_watcher_hears_foreign_macs_for_watched_addresses_only(pair: Pair) -> None:
    heard: list[IPAddress] = []
    reads = 0

    def count_reads() -> set[bytes]:
        nonlocal reads
        reads += 1
        return own_macs()
    macs = OwnMacs(count_reads)
    with entered(pair.node):
        watcher = ConflictWatcher(lambda ip, mac, ifindex: heard.append(ip), macs)
        watcher.start()
    try:
        watcher.watch({V4("192.0.2.50")})
        for _ in range(50):
            pair.arp("192.0.2.99", "192.0.2.98")
        pair.arp("192.0.2.50", "192.0.2.50")
        await until_heard(heard)
        assert heard == [V4("192.0.2.50")]
        assert reads == 1  # the 50 other frames never reached user space
        for _ in range(10):
            pair.arp("192.0.2.50", "192.0.2.50")
        await asyncio.sleep(0.5)
        assert len(heard) == 11 and reads == 1  # cached: read once for all frames
        macs.forget()  # a link event
        pair.arp("192.0.2.50", "192.0.2.50")
        await asyncio.sleep(0.3)
        assert reads == 2
    finally:
        watcher.close()


def test_addresses_in_the_filter_program_are_in_network_order() -> None:
    program = arp_filter({V4("192.0.2.50")})
    assert program is not None
    assert struct.pack("!I", program[1][3]) == V4("192.0.2.50").packed


async def test_a_filter_the_kernel_refuses_falls_back_to_user_space(pair: Pair) -> None:
    """Hundreds of held addresses make a program within BPF_MAXINSNS that the
    kernel still refuses (ENOMEM: net.core.optmem_max); watching them must not
    fail (it failed every reconcile of a node holding them), and a foreign
    MAC announcing one of them is still heard."""
    heard: list[IPAddress] = []
    many = {V4("198.18.0.1") + i for i in range(600)}
    assert arp_filter(many) is not None  # short enough to be tried
    with entered(pair.node):
        watcher = ConflictWatcher(lambda ip, mac, ifindex: heard.append(ip), OwnMacs())
        watcher.start()
    try:
        watcher.watch(many)
        watcher.watch(many | {V4("192.0.2.50")})
        pair.arp("192.0.2.99", "192.0.2.98")  # not ours: passes the kernel, not the set
        pair.arp("192.0.2.50", "192.0.2.50")
        await until_heard(heard)
        assert heard == [V4("192.0.2.50")]
    finally:
        watcher.close()
