"""Netlink adapter, address holder and announcer inside network namespaces.

A node namespace with a veth to a client namespace; the holder runs in the
node namespace (this thread enters it), the client captures what reaches it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import time
from collections.abc import Iterator

import pytest

from externalip.core.holding import Want
from externalip.net.announce import ARP_REPLY, ARP_REQUEST, parse_arp, parse_na
from externalip.net.holder import AddressHolder
from externalip.net.netlink import PROTO, Netlink
from externalip_lab.netns import Capture, NetnsSet, entered, ip

pytestmark = pytest.mark.netns
IF = ipaddress.ip_interface


class Net:
    def __init__(self, ns: NetnsSet, prefix: str) -> None:
        self.node = ns.namespace("node")
        self.client = ns.namespace("client")
        self.dev, self.cdev = f"{prefix}n", f"{prefix}c"
        ns.veth(self.node, self.dev, self.client, self.cdev)
        ns.addr(self.node, self.dev, "192.0.2.10/24")
        ns.addr(self.node, self.dev, "2001:db8::10/64", "nodad")
        ns.addr(self.client, self.cdev, "192.0.2.20/24")
        ns.addr(self.client, self.cdev, "2001:db8::20/64", "nodad")
        self.mac = bytes.fromhex(self.addrs_json()[0]["address"].replace(":", ""))

    def addrs_json(self) -> list[dict]:  # type: ignore[type-arg]
        out = ip("-j", "addr", "show", "dev", self.dev, netns=self.node).stdout
        return json.loads(out)  # type: ignore[no-any-return]

    def addresses(self) -> dict[str, dict]:  # type: ignore[type-arg]
        return {a["local"]: a for a in self.addrs_json()[0]["addr_info"]}


@pytest.fixture
def net(unique: str) -> Iterator[Net]:
    with NetnsSet(unique) as ns:
        yield Net(ns, unique)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


async def hold(net: Net, wants: list[Want], lifetime: float = 30,
               clock: Clock | None = None) -> AddressHolder:
    with entered(net.node):
        holder = AddressHolder(Netlink(), lifetime, clock=clock or time.monotonic)
        await holder.reconcile(wants)  # sockets are created here, in the node namespace
    return holder


async def test_add_marks_deprecated_and_announces(net: Net) -> None:
    with Capture(net.client, net.cdev) as cap:
        holder = await hold(net, [Want(IF("192.0.2.50/32"), net.dev, ("c1",)),
                                  Want(IF("2001:db8::50/128"), net.dev, ("c2",))])
        try:
            addrs = net.addresses()
            for vip in ("192.0.2.50", "2001:db8::50"):
                info = addrs[vip]
                assert info.get("deprecated") and info.get("dynamic"), info
                assert info["valid_life_time"] <= 30 and info["preferred_life_time"] == 0
                assert not info.get("tentative")  # IPv6 without DAD
            assert addrs["2001:db8::50"].get("nodad")
            arp = [await cap.until(lambda f, op=op: (x := parse_arp(f)) and str(x["sender_ip"])
                                   == "192.0.2.50" and x["op"] == op and x)
                   for op in (ARP_REQUEST, ARP_REPLY)]
            for f in arp:
                assert f and f["sender_mac"] == net.mac and f["target_ip"] == ipaddress.ip_address(
                    "192.0.2.50")
            na = await cap.until(lambda f: (x := parse_na(f)) and str(x["target"]) ==
                              "2001:db8::50" and x)
            assert na, "no unsolicited NA captured"
            assert na["target_mac"] == net.mac and na["eth_src"] == net.mac
            assert na["override"] and not na["solicited"] and na["hop_limit"] == 255
            assert str(na["dst"]) == "ff02::1"
            # more than one announcement over the next seconds
            await asyncio.sleep(2)
            await cap.until(lambda f: False, within=0.1)
            sent = [f for f in map(parse_arp, cap.frames)
                    if f and str(f["sender_ip"]) == "192.0.2.50"]
            assert len(sent) >= 4
        finally:
            await holder.close()


async def test_kernel_mark_and_foreign_address_survives(net: Net) -> None:
    ip("addr", "add", "192.0.2.60/32", "dev", net.dev, netns=net.node)  # not ours
    holder = await hold(net, [Want(IF("192.0.2.61/32"), net.dev, ("a",)),
                              Want(IF("192.0.2.60/32"), net.dev, ("b",)),
                              Want(IF("192.0.2.10/32"), net.dev, ("c",))])
    try:
        with entered(net.node):
            marks = {str(a.interface.ip): a.proto for a in holder.netlink.addresses()}
            assert marks["192.0.2.61"] == PROTO and marks["192.0.2.60"] != PROTO
            result = await holder.reconcile([Want(IF("192.0.2.60/32"), net.dev, ("b",)),
                                             Want(IF("192.0.2.10/32"), net.dev, ("c",))])
            assert "as this node's own address" in result.problems["b"]
            assert "as this node's own address" in result.problems["c"]
            await holder.reconcile([])
        addrs = net.addresses()
        assert "192.0.2.61" not in addrs  # ours, no longer wanted: removed
        assert addrs["192.0.2.60"]["valid_life_time"] > 10**9  # theirs: untouched, forever
        assert addrs["192.0.2.10"]["prefixlen"] == 24
    finally:
        await holder.close()


async def test_own_address_stays_first_after_link_flap(net: Net) -> None:
    holder = await hold(net, [Want(IF(f"192.0.2.{i}/32"), net.dev, (str(i),)) for i in (70, 71)])
    try:
        for state in ("down", "up"):
            ip("link", "set", net.dev, state, netns=net.node)
        with entered(net.node):
            await holder.reconcile([Want(IF(f"192.0.2.{i}/32"), net.dev, (str(i),))
                                    for i in (70, 71)])
        out = ip("-4", "-o", "addr", "show", "dev", net.dev, netns=net.node).stdout.split("\n")
        assert "192.0.2.10/24" in out[0], out
        # and the kernel picks the node's own address as source, never a VIP
        route = ip("route", "get", "192.0.2.20", netns=net.node).stdout
        assert "src 192.0.2.10" in route, route
    finally:
        await holder.close()


async def test_unrefreshed_address_expires(net: Net) -> None:
    holder = await hold(net, [Want(IF("192.0.2.80/32"), net.dev, ("a",))], lifetime=2)
    await holder.close()  # the "agent" is gone: nobody refreshes
    assert "192.0.2.80" in net.addresses()
    for _ in range(50):
        if "192.0.2.80" not in net.addresses():
            break
        await asyncio.sleep(0.1)
    assert "192.0.2.80" not in net.addresses()


async def test_refresh_renews_lifetime(net: Net) -> None:
    wants = [Want(IF("192.0.2.81/32"), net.dev, ("a",)),
             Want(IF("2001:db8::81/128"), net.dev, ("b",))]
    holder = await hold(net, wants, lifetime=2)
    try:
        for _ in range(6):  # 3 s, longer than the lifetime
            await asyncio.sleep(0.5)
            with entered(net.node):
                await holder.reconcile(wants)
        addrs = net.addresses()
        for vip in ("192.0.2.81", "2001:db8::81"):  # renewed, still marked and deprecated
            assert addrs[vip].get("deprecated") and addrs[vip]["preferred_life_time"] == 0
        assert addrs["2001:db8::81"].get("nodad")
        with entered(net.node):
            marks = {str(a.interface.ip): a.proto for a in holder.netlink.addresses()}
        assert marks["192.0.2.81"] == marks["2001:db8::81"] == PROTO
    finally:
        await holder.close()


async def test_lifetime_renewed_only_when_due(net: Net) -> None:
    # Reconciles run on every claim event; with many addresses, renewing all
    # lifetimes each time would be wasted work. Lifetime 30 s: due after 9 s.
    wants = [Want(IF("192.0.2.82/32"), net.dev, ("a",))]
    clock = Clock()
    holder = await hold(net, wants, lifetime=30, clock=clock)
    try:
        await asyncio.sleep(2.1)  # the kernel's own countdown runs on real time
        clock.t += 8.9  # the holder's clock: not yet due
        with entered(net.node):
            await holder.reconcile(wants)
        assert net.addresses()["192.0.2.82"]["valid_life_time"] <= 28  # not renewed
        clock.t += 0.2  # now 9.1 s after the add: due
        with entered(net.node):
            await holder.reconcile(wants)
        assert net.addresses()["192.0.2.82"]["valid_life_time"] >= 29  # renewed
    finally:
        await holder.close()


async def test_nothing_announced_on_lo(net: Net) -> None:
    holder = await hold(net, [Want(IF("203.0.113.5/32"), "lo", ("a",))])
    try:
        assert holder.announcer.pending == 0
        lo = ip("-j", "addr", "show", "dev", "lo", netns=net.node).stdout
        assert "203.0.113.5" in lo
    finally:
        await holder.close()


async def test_an_address_kept_but_not_held_before_is_announced(net: Net) -> None:
    """A leftover of ours whose claim comes back (or an agent restart adopting
    it) must be announced: clients may still point at another node's MAC."""
    want = Want(IF("192.0.2.60/32"), net.dev, ("c1",))
    first = await hold(net, [want])
    await first.close()  # the agent goes away; the address stays within its lifetime
    await asyncio.sleep(3.5)  # the first holder's announcements are over
    with Capture(net.client, net.cdev) as cap:
        second = await hold(net, [want])
        try:
            assert "192.0.2.60" in net.addresses()  # kept, not re-added
            garp = await cap.until(lambda f: (x := parse_arp(f)) and
                                   str(x["sender_ip"]) == "192.0.2.60" and x)
            assert garp and garp["sender_mac"] == net.mac
            with entered(net.node):
                await second.reconcile([want])  # held now: nothing new to say
            await asyncio.sleep(3.5)
            count = len([f for f in map(parse_arp, cap.frames)
                         if f and str(f["sender_ip"]) == "192.0.2.60"])
            await asyncio.sleep(1.0)
            assert count == len([f for f in map(parse_arp, cap.frames)
                                 if f and str(f["sender_ip"]) == "192.0.2.60"])
        finally:
            await second.close()


async def test_special_and_subnet_edge_addresses_never_reach_the_link(net: Net) -> None:
    """The agent's last line (issue 12, item 6): claims or Services naming these
    addresses are refused with a reason, and nothing is added or announced."""
    bad = ["127.0.0.2/32", "0.1.2.3/32", "224.0.0.1/32", "239.1.2.3/32", "255.255.255.255/32",
           "240.0.0.1/32", "169.254.0.1/32", "192.0.2.0/32", "192.0.2.255/32", "fe80::99/128",
           "::1/128", "ff02::5/128", "2001:db8::/128"]
    wants = [Want(IF(cidr), net.dev, (cidr,)) for cidr in bad]
    with Capture(net.client, net.cdev) as cap, entered(net.node):
        holder = AddressHolder(Netlink(), 30)
        result = await holder.reconcile([*wants, Want(IF("192.0.2.50/32"), net.dev, ("ok",))])
        assert set(result.problems) == set(bad)
        assert all("refusing to hold" in why for why in result.problems.values())
        assert [w.owners for w in result.held] == [("ok",)]
        addresses = set(net.addresses())
        assert not {cidr.split("/")[0] for cidr in bad} & addresses
        assert "192.0.2.50" in addresses
        # announcements for the good address only
        await cap.until(lambda f: (x := parse_arp(f)) and str(x["sender_ip"]) == "192.0.2.50")
        senders = {str(x["sender_ip"]) for f in cap.frames if (x := parse_arp(f))}
        assert senders == {"192.0.2.50"}
        await holder.reconcile([])


async def test_an_address_handed_over_is_never_announced_and_quiet_never_re_added(
        net: Net) -> None:
    """A drained node (core.handover): it keeps or even re-adds an address it
    still answers for without announcing it (the new holder may have already),
    a restarted agent adopts it silently, and a quiet one is only ever kept."""
    handing = Want(IF("192.0.2.70/32"), net.dev, ("h",), handover=True)
    with Capture(net.client, net.cdev) as cap:
        holder = await hold(net, [handing])  # added (as after a removal by hand)
        try:
            assert "192.0.2.70" in net.addresses()
            with entered(net.node):
                fresh = AddressHolder(Netlink(), 30)  # a restarted agent
                await fresh.reconcile([handing])
                quiet = Want(IF("192.0.2.70/32"), net.dev, ("h",), handover=True, quiet=True)
                await fresh.reconcile([quiet])
                fresh.announce_held()
            await asyncio.sleep(1.0)
            await cap.until(lambda f: False, within=0.1)
            assert not [f for f in map(parse_arp, cap.frames)
                        if f and str(f["sender_ip"]) == "192.0.2.70"]
            with entered(net.node):
                ip("addr", "del", "192.0.2.70/32", "dev", net.dev, netns=net.node)
                result = await fresh.reconcile([quiet])
                await fresh.close()
            assert "192.0.2.70" not in net.addresses() and result.problems == {}
        finally:
            await holder.close()
