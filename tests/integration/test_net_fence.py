"""The nftables fence in network namespaces: a node answers ARP/ND for its held
addresses only while someone keeps refreshing it, and falls silent by itself.

A node namespace holds the addresses (added by hand) and the fence; a client
namespace on the same segment resolves them. The refresher is a separate
process so the test can freeze it (SIGSTOP), as a frozen agent would be.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from externalip.net.announce import Announcer, parse_arp, parse_na
from externalip.net.netlink import ARPHRD_ETHER, IFF_UP, Link
from externalip.net.nftfence import Fence, FenceError, table_name
from externalip_lab.netns import Capture, NetnsSet, entered, ip

pytestmark = pytest.mark.netns

V4, V6 = "192.0.2.50", "2001:db8::50"
# Longer than the 0.25 s default: on a loaded 2-core test machine a Python
# refresher sleeping 0.1 s can wake 0.3 s late, and the fence (rightly) lapses.
T_FENCE = 1.0
MARGIN = 0.75  # for the kernel's expiry to be observed; the fence itself is exact

REFRESHER = f"""
import ipaddress, sys, time
from externalip.net.nftfence import Fence
fence = Fence(sys.argv[1])
fence.install()
fence.hold(map(ipaddress.ip_address, sys.argv[2:]))
print("ready", flush=True)
while True:
    fence.refresh({T_FENCE!r})
    time.sleep(0.1)
"""


@dataclass
class Segment:
    ns: NetnsSet
    node: str
    client: str
    dev: str
    cdev: str

    def answers(self, addr: str) -> bool:
        """Does the node answer the client for `addr` (a fresh ARP/ND resolution + ping)?"""
        ip("neigh", "flush", "dev", self.cdev, netns=self.client)
        done = self.ns.exec(self.client, ["ping", "-n", "-c", "1", "-w", "2", "-I", self.cdev,
                                          addr])
        return done.returncode == 0

    def drops(self) -> int:
        out = self.ns.exec(self.node, ["nft", "-j", "list", "table", "netdev",
                                       table_name(self.dev)]).stdout
        rules = [x["rule"] for x in json.loads(out)["nftables"] if "rule" in x]
        return sum(e["counter"]["packets"] for r in rules for e in r["expr"] if "counter" in e)


@pytest.fixture
def seg(unique: str) -> Iterator[Segment]:
    with NetnsSet(unique) as ns:
        node, client = ns.namespace("node"), ns.namespace("client")
        dev, cdev = f"{unique}n", f"{unique}c"
        ns.veth(node, dev, client, cdev)
        ns.addr(node, dev, "192.0.2.10/24")
        ns.addr(node, dev, "2001:db8::10/64", "nodad")
        ns.addr(client, cdev, "192.0.2.20/24")
        ns.addr(client, cdev, "2001:db8::20/64", "nodad")
        ns.addr(node, dev, f"{V4}/32")
        ns.addr(node, dev, f"{V6}/128", "nodad")
        yield Segment(ns, node, client, dev, cdev)


def start_refresher(seg: Segment) -> subprocess.Popen[bytes]:
    proc = seg.ns.popen(seg.node, [sys.executable, "-c", REFRESHER, seg.dev, V4, V6],
                        stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
    return proc


def test_frozen_refresher_falls_silent_and_comes_back(seg: Segment) -> None:
    proc = start_refresher(seg)
    assert seg.answers(V4) and seg.answers(V6)
    assert seg.drops() == 0
    proc.send_signal(signal.SIGSTOP)
    try:
        time.sleep(T_FENCE + MARGIN)
        assert not seg.answers(V4) and not seg.answers(V6)
        assert seg.drops() >= 2  # the fence dropped them, not something else
        assert seg.answers("192.0.2.10")  # the node's own address is not fenced
    finally:
        proc.send_signal(signal.SIGCONT)
    time.sleep(0.3)  # the refresher's sleep is over: it refreshes as soon as it runs
    assert seg.answers(V4) and seg.answers(V6)
    proc.kill()
    proc.wait(10)
    time.sleep(T_FENCE + MARGIN)
    assert not seg.answers(V4)  # a dead refresher is no different
    addrs = ip("-j", "addr", "show", "dev", seg.dev, netns=seg.node).stdout
    assert V4 in addrs and V6 in addrs  # fenced, not removed


def test_lapse_hold_and_remove_in_process(seg: Segment) -> None:
    with entered(seg.node):
        fence = Fence(seg.dev)
    try:
        fence.install()
        fence.hold([ipaddress.ip_address(V4)])
        fence.refresh(30)
        assert seg.answers(V4)
        fence.lapse()
        assert not seg.answers(V4)
        assert seg.answers(V6)  # not held: not fenced
        fence.hold([ipaddress.ip_address(V6)])
        assert fence.held() == {ipaddress.ip_address(V6)}
        assert seg.answers(V4) and not seg.answers(V6)
        fence.refresh(30)
        fence.install()  # a restarted agent: held addresses and liveness survive
        assert fence.held() == {ipaddress.ip_address(V6)} and seg.answers(V6)
        # someone removed an element behind our back: hold() still ends exact
        seg.ns.exec(seg.node, ["nft", "flush", "set", "netdev", table_name(seg.dev), "held6"])
        fence.hold([ipaddress.ip_address(V4)])
        assert fence.held() == {ipaddress.ip_address(V4)}
        fence.hold([ipaddress.ip_address(V6)])
        fence.remove()
        fence.remove()  # idempotent
        listed = seg.ns.exec(seg.node, ["nft", "list", "tables"]).stdout
        assert table_name(seg.dev) not in listed
    finally:
        fence.close()


def test_lapsed_fence_stops_our_own_announcements(seg: Segment) -> None:
    info = json.loads(ip("-j", "link", "show", "dev", seg.dev, netns=seg.node).stdout)[0]
    link = Link(info["ifindex"], seg.dev, bytes.fromhex(info["address"].replace(":", "")),
                IFF_UP, ARPHRD_ETHER)
    vips = [ipaddress.ip_address(V4), ipaddress.ip_address(V6)]
    with entered(seg.node):
        fence = Fence(seg.dev)
        announcer = Announcer()
    try:
        fence.install()
        fence.hold(vips)

        def heard_announcements() -> set[str]:
            with Capture(seg.client, seg.cdev) as cap:
                for vip in vips:
                    # a frame the fence drops fails with ENOBUFS at the sender
                    with contextlib.suppress(OSError):
                        announcer.send(link, vip)
                cap.wait_for(lambda frame: False, within=0.5)
                arp = {str(a["sender_ip"]) for a in map(parse_arp, cap.frames) if a}
                na = {str(n["target"]) for n in map(parse_na, cap.frames) if n}
            return (arp | na) & {V4, V6}

        assert heard_announcements() == set()  # never refreshed: silent both ways
        fence.refresh(30)
        assert heard_announcements() == {V4, V6}
        fence.lapse()
        assert heard_announcements() == set()
    finally:
        asyncio.run(announcer.close())
        fence.remove()
        fence.close()


def test_fence_errors_name_the_problem(seg: Segment) -> None:
    with entered(seg.node), pytest.raises(FenceError, match="no link 'lo0'"):
        Fence("lo0")
    with pytest.raises(ValueError, match="not a link name"):
        Fence('bad"name')


def test_a_quiet_address_is_served_but_never_answered_for(seg: Segment) -> None:
    """A drained node's handed-over address (core.handover): packets a client
    still sends to the node's MAC are served, but nobody learns the MAC anew,
    however alive the node is."""
    vips = {ipaddress.ip_address(V4), ipaddress.ip_address(V6)}
    with entered(seg.node):
        fence = Fence(seg.dev)
    try:
        fence.install()
        fence.hold(vips)
        fence.refresh(30)

        def served(vip: str) -> bool:  # without forgetting the MAC the client learnt
            done = seg.ns.exec(seg.client, ["ping", "-n", "-c", "1", "-w", "2", "-I",
                                            seg.cdev, vip])
            return done.returncode == 0

        assert seg.answers(V4) and served(V6)  # the client has the node's MAC for both
        fence.quiet(vips)
        assert served(V4) and served(V6)
        assert not seg.answers(V4) and not seg.answers(V6)  # a fresh resolution fails
        assert seg.answers("192.0.2.10")  # the node's own address is not touched
        with entered(seg.node):
            again = Fence(seg.dev)
        again.install()  # a restarted agent reads the quiet set back
        assert again.held("quiet") == vips
        again.close()
        fence.quiet([ipaddress.ip_address(V6)])
        assert seg.answers(V4) and not seg.answers(V6)
        fence.quiet([])
        assert seg.answers(V6)
    finally:
        fence.remove()
        fence.close()
