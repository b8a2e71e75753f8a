"""Heartbeats between node namespaces on one bridge (the lab's topology).

Each node's `Heartbeats` is started from a thread that has entered the node's
namespace, so its socket and thread live there, as an agent's would on a
node. Waits poll the public `view()` with a generous limit: they wait for a
state, they do not assert on how fast it came.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from prometheus_client import REGISTRY

from externalip.core.heartbeat import KeyRing, PeerView
from externalip.net.heartbeat import Heartbeats
from externalip.net.nftfence import Fence, table_name
from externalip_lab.netns import entered
from externalip_lab.topology import Topology, ip, node_addresses
from tests.helpers import wait_for

pytestmark = pytest.mark.netns

PORT = 7947
# Wider than the defaults (0.5 s, 0.2 s): the test machine has 2 cores shared with
# other test runs, and these tests are about behaviour, not about tight timings.
TIMINGS = {"detect": 1.0, "starve_after": 0.4}
RING = KeyRing(1, {1: b"k" * 32})
NODES = ("node1", "node2", "node3")


class Segment:
    def __init__(self, prefix: str, nodes: int = 3) -> None:
        self.topo = Topology(prefix, nodes)
        self.beats: dict[str, Heartbeats] = {}
        self.impostors: list[Heartbeats] = []

    def run(self, node: str, name: str | None = None, keys: KeyRing = RING,
            **kw: object) -> Heartbeats:
        """Heartbeats inside `node`'s namespace, in its own name or (an impostor) in `name`."""
        with entered(self.topo.node_ns(node)):
            hb = Heartbeats(name or node, "eth0", PORT, keys,
                            **{**TIMINGS, **kw})  # type: ignore[arg-type]
            hb.start()
        if name is None:
            self.beats[node] = hb
        else:
            self.impostors.append(hb)
        return hb

    def fresh(self, node: str) -> frozenset[str]:
        return self.beats[node].view().hears

    def stop(self) -> None:
        for hb in [*self.beats.values(), *self.impostors]:
            hb.stop()


@pytest.fixture
def seg(unique: str) -> Iterator[Segment]:
    s = Segment(unique)
    try:
        s.topo.create()
        yield s
    finally:
        s.stop()
        s.topo.destroy()


def test_peers_see_each_other_and_a_dead_link_goes_stale(seg: Segment) -> None:
    changes: list[PeerView] = []
    seg.run("node1", on_change=changes.append)
    for node in NODES[1:]:
        seg.run(node)
    for node in NODES:
        others = frozenset(NODES) - {node}
        wait_for(lambda node=node, others=others: seg.fresh(node) == others, what=node)
    # what node2 hears travels in its beats
    wait_for(lambda: seg.beats["node1"].view().peers["node2"].beat.heard("node3"))
    wait_for(lambda: changes[-1].hears == {"node2", "node3"})

    seg.topo.link_down("node3")
    wait_for(lambda: seg.fresh("node1") == {"node2"}
                      and seg.fresh("node2") == {"node1"})
    wait_for(lambda: seg.fresh("node3") == frozenset())  # it hears nobody either
    assert not seg.beats["node1"].view().peers["node3"].fresh
    wait_for(lambda: changes[-1].hears == {"node2"})
    seg.topo.link_up("node3")
    wait_for(lambda: seg.fresh("node1") == {"node2", "node3"})


def test_wrong_key_is_counted_as_forged_and_never_fresh(seg: Segment) -> None:
    alarms: list[str] = []
    seg.run("node1", on_auth_failure=alarms.append)
    seg.run("node2")
    wait_for(lambda: seg.fresh("node1") == {"node2"})
    # node3 with a wrong key, and an impostor on node3 sending in node2's name
    seg.run("node3", keys=KeyRing(1, {1: b"w" * 32}))
    seg.run("node3", name="node2", keys=KeyRing(2, {2: b"x" * 32}))
    wait_for(lambda: seg.beats["node1"].drops().get("forged", 0) >= 10)
    assert "node3" not in seg.beats["node1"].view().peers
    assert alarms == ["node2"]  # only a known peer raises the alarm, once per ALARM_EVERY
    seg.run("node3", name="node1")  # a namesake with the right key is not a peer either
    wait_for(lambda: seg.beats["node1"].drops().get("own-name", 0) > 0)
    assert "node1" not in seg.beats["node1"].view().peers
    metric = REGISTRY.get_sample_value
    assert (metric("externalip_heartbeat_dropped_total", {"reason": "forged"}) or 0) >= 10
    assert (metric("externalip_heartbeat_auth_alarms_total") or 0) >= 1
    view = seg.beats["node1"].view()
    assert set(view.forged) == {"node2"} and view.at - view.forged["node2"] < 5
    seg.beats["node2"].stop()  # the real node2 dies; its impostor keeps sending
    wait_for(lambda: "node2" not in seg.fresh("node1"))


def test_rotation_accepts_two_keys(seg: Segment) -> None:
    old, new = b"o" * 32, b"n" * 32
    # mid-rotation: node1 and node2 accept both keys, node2 already signs with the new
    # one; node3 has not been given the new key yet
    seg.run("node1", keys=KeyRing(1, {1: old, 2: new}))
    seg.run("node2", keys=KeyRing(2, {1: old, 2: new}))
    seg.run("node3", keys=KeyRing(1, {1: old}))
    wait_for(lambda: seg.fresh("node1") == {"node2", "node3"})
    wait_for(lambda: seg.fresh("node2") == {"node1", "node3"})
    wait_for(lambda: seg.beats["node3"].drops().get("forged", 0) > 0)
    assert seg.fresh("node3") == {"node1"}


def test_replayed_beats_do_not_revive_a_dead_peer(seg: Segment) -> None:
    seg.run("node1")
    seg.run("node2")
    # a recorder on node3's segment port keeps node2's beats
    with entered(seg.topo.node_ns("node3")):
        rec = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rec.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        rec.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        rec.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"eth0")
        rec.bind(("0.0.0.0", PORT))
    try:
        rec.settimeout(5)
        recorded = []
        while len(recorded) < 5:
            data, (src, _) = rec.recvfrom(2048)
            if src == node_addresses(2)[0]:
                recorded.append(data)
        seg.beats["node2"].stop()
        wait_for(lambda: seg.fresh("node1") == frozenset())
        for data in recorded:
            rec.sendto(data, ("255.255.255.255", PORT))
        # refused as replays (seq not newer), or, once older than the allowed clock
        # skew, as too old: either way never taken as life
        refused = lambda: sum(seg.beats["node1"].drops().get(r, 0)  # noqa: E731
                              for r in ("replay", "clock-skew"))
        wait_for(lambda: refused() >= 5)
        assert seg.fresh("node1") == frozenset()
        assert not seg.beats["node1"].view().peers["node2"].fresh
    finally:
        rec.close()


def test_a_late_loop_marks_its_beats_starved(seg: Segment) -> None:
    stalls = [1.0]  # the first on_change call blocks the heartbeat thread once

    def slow_callback(view: PeerView) -> None:
        if stalls:
            time.sleep(stalls.pop())

    seg.run("node1", on_change=slow_callback)
    seg.run("node2")
    wait_for(lambda: seg.beats["node2"].view().peers.get("node1") is not None
                      and seg.beats["node2"].view().peers["node1"].beat.starved)
    wait_for(lambda: not seg.beats["node2"].view().peers["node1"].beat.starved)


def stall_when_heard(peer: str, hold: Callable[[], object]
                     ) -> tuple[threading.Event, Callable[[PeerView], None]]:
    """An on_change callback that stops the heartbeat thread in `hold` the
    first time it hears `peer`, and the event that says it did."""
    stalled = threading.Event()

    def stall_once(view: PeerView) -> None:
        if peer in view.hears and not stalled.is_set():
            stalled.set()
            hold()  # the heartbeat thread is stuck here

    return stalled, stall_once


def test_beats_queued_during_a_stall_count_from_their_arrival(seg: Segment) -> None:
    stalled, stall_once = stall_when_heard("node3", lambda: time.sleep(2.5))
    seg.run("node1", on_change=stall_once)
    seg.run("node2")
    wait_for(lambda: seg.fresh("node1") == {"node2"})
    seg.run("node3")
    assert stalled.wait(10)
    seg.beats["node2"].stop()  # dies while node1 is frozen; its last beats wait in the queue
    views: list[PeerView] = []
    wait_for(lambda: views.append(v := seg.beats["node1"].view()) or v.lag > 2.4)
    after = views[-1]  # the first view after the stall: node2 is stale at once
    assert after.hears == {"node3"} and after.starved


def test_a_view_taken_while_the_thread_is_stalled_accuses_nobody(seg: Segment) -> None:
    """The event loop asks for views between ticks. While the heartbeat thread
    is stuck, beats queue up unread: a view dated now would show a live peer
    silent for longer than the detection window. It must be the last tick's
    view, and say that we are starved, so no verdict is drawn from it."""
    release = threading.Event()
    stalled, stall_once = stall_when_heard("node2", lambda: release.wait(10))
    seg.run("node1", on_change=stall_once)
    seg.run("node2")
    try:
        assert stalled.wait(10)
        time.sleep(TIMINGS["detect"] + 0.5)  # node2 beats on; node1 reads nothing
        view = seg.beats["node1"].view()
    finally:
        release.set()
    assert view.starved
    assert view.at - view.peers["node2"].heard_at <= TIMINGS["detect"]
    wait_for(lambda: not seg.beats["node1"].view().starved)
    assert seg.fresh("node1") == {"node2"}


def test_fence_follows_may_hold(seg: Segment) -> None:
    ns = seg.topo.node_ns("node1")
    with entered(ns):
        fence = Fence("eth0")
    fence.install()
    fence.hold([ipaddress.ip_address("192.0.2.200")])

    def alive() -> bool:
        listed = json.loads(_nft(ns, "-j", "list", "set", "netdev", table_name("eth0"),
                                 "alive"))
        return bool(listed["nftables"][1]["set"].get("elem"))

    try:
        seg.run("node1", fence=fence, may_hold=lambda view: bool(view.hears))
        assert not alive()  # alone: the rule says no
        seg.run("node2")
        wait_for(alive)
        seg.topo.link_down("node1")
        wait_for(lambda: not alive())
    finally:
        seg.beats["node1"].stop()
        fence.remove()
        fence.close()


def _nft(ns: str, *args: str) -> str:
    return subprocess.run(["ip", "netns", "exec", ns, "nft", *args], check=True,
                          capture_output=True, text=True).stdout


def test_ipv6_only_link_uses_all_nodes_multicast(unique: str) -> None:
    seg = Segment(unique, nodes=2)
    try:
        seg.topo.create()
        for i, node in enumerate(("node1", "node2"), start=1):
            ip("-n", seg.topo.node_ns(node), "addr", "del", f"{node_addresses(i)[0]}/24",
               "dev", "eth0")
        seg.run("node1")
        seg.run("node2")
        wait_for(lambda: seg.fresh("node1") == {"node2"})
        wait_for(lambda: seg.fresh("node2") == {"node1"})
    finally:
        seg.stop()
        seg.topo.destroy()


def test_a_missing_link_is_named_in_the_error(seg: Segment) -> None:
    with entered(seg.topo.node_ns("node1")), pytest.raises(OSError, match="'eth9'"):
        Heartbeats("node1", "eth9", PORT, RING).start()
