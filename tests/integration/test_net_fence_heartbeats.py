"""Heartbeats and the fence together: a holder whose agent freezes, or that hears
no peer, stops answering ARP/ND for its addresses without running.

node1 holds a VIP (added by hand) and runs heartbeats with its fence in a
process of its own (heartbeat_node.py), so the test can SIGSTOP it; node2
and node3 beat from threads of this process; the lab's client resolves the
VIP. The failover rule is a stand-in: hold while some peer is heard and our
loop is not starved.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from externalip.core.heartbeat import KeyRing
from externalip.net.heartbeat import Heartbeats
from externalip_lab.netns import entered
from externalip_lab.topology import Topology, ip, node_addresses
from tests.helpers import wait_for

pytestmark = pytest.mark.netns

PORT = 7947
KEY = b"fence-heartbeat-test-key-0123456"
VIP4, VIP6 = "192.0.2.200", "2001:db8::200"
NODE = Path(__file__).with_name("heartbeat_node.py")


class Lab:
    def __init__(self, topo: Topology) -> None:
        self.topo = topo
        self.peers: list[Heartbeats] = []
        self.holder: subprocess.Popen[bytes] | None = None

    def answers(self, addr: str) -> bool:
        ip("-n", self.topo.client, "neigh", "flush", "dev", "eth0")
        done = subprocess.run(["ip", "netns", "exec", self.topo.client, "ping", "-n", "-c", "1",
                               "-w", "2", "-I", "eth0", addr], capture_output=True, check=False)
        return done.returncode == 0

    def node1_hears(self) -> bool:
        return all("node1" in hb.view().hears for hb in self.peers)


@pytest.fixture
def lab(unique: str) -> Iterator[Lab]:
    topo = Topology(unique, 3)
    lab = Lab(topo)
    try:
        topo.create()
        ns1 = topo.node_ns("node1")
        ip("-n", ns1, "addr", "add", f"{VIP4}/32", "dev", "eth0")
        ip("-n", ns1, "addr", "add", f"{VIP6}/128", "dev", "eth0", "nodad")
        lab.holder = subprocess.Popen(
            ["ip", "netns", "exec", ns1, sys.executable, str(NODE), "node1", "eth0", str(PORT),
             KEY.hex(), VIP4, VIP6], stdout=subprocess.PIPE)
        assert lab.holder.stdout is not None and lab.holder.stdout.readline() == b"ready\n"
        for node in ("node2", "node3"):
            with entered(topo.node_ns(node)):
                hb = Heartbeats(node, "eth0", PORT, KeyRing(1, {1: KEY}), detect=1.0)
                hb.start()
            lab.peers.append(hb)
        yield lab
    finally:
        for hb in lab.peers:
            hb.stop()
        if lab.holder is not None:
            lab.holder.send_signal(signal.SIGCONT)
            lab.holder.kill()
            lab.holder.wait(10)
        topo.destroy()


def test_frozen_holder_falls_silent_and_returns(lab: Lab) -> None:
    wait_for(lab.node1_hears)
    wait_for(lambda: lab.answers(VIP4) and lab.answers(VIP6))
    assert lab.holder is not None
    lab.holder.send_signal(signal.SIGSTOP)
    try:
        wait_for(lambda: not lab.node1_hears())  # the peers see it stale...
        wait_for(lambda: not lab.answers(VIP4))  # ...and it has gone silent
        assert not lab.answers(VIP6)
        assert lab.answers(node_addresses(1)[0])  # its own address is not fenced
    finally:
        lab.holder.send_signal(signal.SIGCONT)
    # back: starved for a detection window, then it hears its peers and holds again
    wait_for(lambda: lab.answers(VIP4) and lab.answers(VIP6))


def test_holder_that_hears_no_peer_yields(lab: Lab) -> None:
    wait_for(lambda: lab.answers(VIP4))
    ns1 = lab.topo.node_ns("node1")
    subprocess.run(["ip", "netns", "exec", ns1, "nft",
                    f"add table inet block; add chain inet block in {{ type filter hook input "
                    f"priority 0; policy accept; }}; add rule inet block in udp dport {PORT} drop"],
                   check=True)
    wait_for(lambda: not lab.answers(VIP4))
    assert not lab.answers(VIP6)
    assert lab.answers(node_addresses(1)[0])
    subprocess.run(["ip", "netns", "exec", ns1, "nft", "delete table inet block"], check=True)
    wait_for(lambda: lab.answers(VIP4))
