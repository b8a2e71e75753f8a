"""The latency histograms and the pruning of stale series (issue 15, item 4)."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Collection

from prometheus_client import REGISTRY, Gauge

from externalip.agent.failover import Failover
from externalip.core import liveness
from externalip.core.model import Claim, ClaimSpec
from externalip.net.announce import Announcer
from externalip.net.kernel import ARPHRD_ETHER, IFF_UP
from externalip.net.netlink import Link
from externalip.scheduler.metrics import AllocationClock, prune


def sample(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def service(name: str, ingress: bool = False) -> dict[str, object]:
    return {"metadata": {"namespace": "ns", "name": name}, "spec": {"type": "LoadBalancer"},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}] if ingress else []}}}


def test_allocation_is_timed_from_the_service_first_seen_to_its_status_written() -> None:
    clock, before = Clock(), sample("externalip_allocation_seconds_count")
    timer = AllocationClock(lambda svc: True, clock)
    timer.observe("ADDED", service("a"))
    clock.now += 0.2
    timer.observe("MODIFIED", service("a"))  # seen again: still timed from the first
    clock.now += 0.3
    timer.observe("MODIFIED", service("a", ingress=True))  # the watch beat the response
    timer.written("ns/a", ())  # an empty status is no allocation
    assert sample("externalip_allocation_seconds_count") == before
    timer.written("ns/a", ("192.0.2.1",))
    assert sample("externalip_allocation_seconds_count") == before + 1
    assert sample("externalip_allocation_seconds_bucket", ) is not None
    timer.written("ns/a", ("192.0.2.1",))  # once per allocation
    assert sample("externalip_allocation_seconds_count") == before + 1
    timer.observe("ADDED", service("b", ingress=True))  # had its address already
    timer.observe("ADDED", service("c"))
    timer.observe("DELETED", service("c"))
    timer.written("ns/b", ("192.0.2.1",))
    timer.written("ns/c", ("192.0.2.2",))
    assert sample("externalip_allocation_seconds_count") == before + 1


def test_series_of_deleted_pools_are_removed() -> None:
    gauge = Gauge("externalip_test_pool_series", "test", ["pool"])
    for pool in ("a", "b"):
        gauge.labels(pool).set(1)
    prune(gauge, {"a", "b", "never-set"}, {"a"})
    pools = {s.labels["pool"] for m in gauge.collect() for s in m.samples}
    assert pools == {"a"}


class Peers:
    def __init__(self, peers: dict[str, liveness.Peer]) -> None:
        self._peers = peers

    def peers(self, names: Collection[str]) -> dict[str, liveness.Peer]:
        return {n: p for n, p in self._peers.items() if n in names}

    def starved(self) -> bool:
        return False

    def unverified(self, within: float) -> frozenset[str]:
        return frozenset()


def test_a_takeover_is_timed_until_its_address_is_announced() -> None:
    clock = Clock()
    failover = Failover("n2", "eth0", liveness.Timing(), clock=clock, carrier=lambda _l: True)
    failover.attach(Peers({"n1": liveness.Peer(age=5.0),
                           "n3": liveness.Peer(age=0.05, hears=frozenset({"n2"}))}))
    clock.now += 10  # past the startup listening time
    failover.armed = True
    claim = Claim("c", ClaimSpec(cidr="192.0.2.7/32", node_name="n1", standbys=("n2", "n3")))
    before = sample("externalip_takeover_seconds_count")
    assert failover.select([claim]) == [claim]  # taken over
    clock.now += 0.04
    failover.announced(ipaddress.ip_address("192.0.2.8"))  # not one we took
    assert sample("externalip_takeover_seconds_count") == before
    failover.announced(ipaddress.ip_address("192.0.2.7"))
    assert sample("externalip_takeover_seconds_count") == before + 1
    failover.announced(ipaddress.ip_address("192.0.2.7"))  # later bursts are no takeover
    assert sample("externalip_takeover_seconds_count") == before + 1


def test_the_announcer_reports_each_bursts_first_announcement() -> None:
    firsts: list[tuple[str, float]] = []

    async def run() -> None:
        announcer = Announcer(schedule=(0.0, 0.01), rate=0.0,
                              on_first=lambda ip, waited: firsts.append((str(ip), waited)))
        link = Link(index=1, name="eth9", mac=b"\2" * 6, flags=IFF_UP, kind=ARPHRD_ETHER)
        sent: list[str] = []
        announcer.send = lambda _link, ip: sent.append(str(ip))  # type: ignore[method-assign,assignment]
        announcer.announce(link, ipaddress.ip_address("192.0.2.9"))
        for _ in range(500):  # the whole burst, however loaded the machine
            if len(sent) == 2:
                break
            await asyncio.sleep(0.01)
        assert sent == ["192.0.2.9", "192.0.2.9"]
        await announcer.close()
    asyncio.run(run())
    assert [ip for ip, _ in firsts] == ["192.0.2.9"] and firsts[0][1] >= 0  # once per burst
