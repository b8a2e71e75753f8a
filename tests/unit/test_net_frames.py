"""Announcement frames, built and decoded without sockets."""

from __future__ import annotations

import ipaddress
import struct

import pytest

from externalip.net.announce import (
    ARP_REPLY,
    ARP_REQUEST,
    UNPACED,
    Pacer,
    arp_frame,
    na_message,
    parse_arp,
    parse_na,
)
from externalip.net.holder import refresh_period
from externalip.net.netlink import INFINITY_LIFE, lifetimes

MAC = bytes.fromhex("020000000001")


def test_garp_sender_equals_target() -> None:
    ip = ipaddress.IPv4Address("192.0.2.5")
    for op in (ARP_REQUEST, ARP_REPLY):
        f = parse_arp(arp_frame(MAC, ip, op))
        assert f is not None
        assert f["op"] == op and f["sender_mac"] == MAC and f["eth_src"] == MAC
        assert f["sender_ip"] == f["target_ip"] == ip and f["eth_dst"] == b"\xff" * 6


def test_na_has_override_and_target_lladdr() -> None:
    ip = ipaddress.IPv6Address("2001:db8::5")
    body = na_message(MAC, ip)
    ip6 = struct.pack("!IHBB", 0x60000000, len(body), 58, 255) + ip.packed + \
        ipaddress.IPv6Address("ff02::1").packed
    frame = b"\x33\x33\x00\x00\x00\x01" + MAC + b"\x86\xdd" + ip6 + body
    f = parse_na(frame)
    assert f is not None
    assert f["override"] and not f["solicited"] and f["target"] == ip and f["target_mac"] == MAC
    assert parse_arp(frame) is None
    assert parse_na(arp_frame(MAC, ipaddress.IPv4Address("192.0.2.1"), 1)) is None


def test_lifetimes_and_refresh_period() -> None:
    assert lifetimes(6) == (6, 0)  # preferred 0: never a source address
    assert lifetimes(0) == (INFINITY_LIFE, 0)
    assert refresh_period(6, 20) == 2
    assert refresh_period(0, 20) == 20 and refresh_period(90, 20) == 20


async def test_the_pacer_spaces_announcements_at_the_rate(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    """Dynamic ARP Inspection: a burst of takeovers is spread, not sent at once."""
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    pacer = Pacer(rate=10.0)
    monkeypatch.setattr("externalip.net.announce.asyncio.sleep", fake_sleep)
    for _ in range(5):
        await pacer.slot()
    # the clock stands still here: each slot waits one gap more than the one before
    assert slept == pytest.approx([0.1, 0.2, 0.3, 0.4], abs=0.02)
    # no rate configured: still spread, so the kernel's queues (~1,000 frames)
    # do not drop a takeover's burst, and 3,333 announcements take < 0.2 s
    unlimited = Pacer(rate=0.0)
    slept.clear()
    for _ in range(3333):
        await unlimited.slot()
    assert len(slept) == 3332 and slept[-1] == pytest.approx(3332 / UNPACED, abs=0.02)
    assert slept[-1] < 0.2
