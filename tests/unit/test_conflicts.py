"""Address conflicts (issue 12, item 11): what the agent probes, how it reports
a conflict, and how the scheduler's pool skips the address."""

from __future__ import annotations

import ipaddress
from collections.abc import Collection

from externalip.agent.conflicts import HOLD_OFF, Conflicts
from externalip.core.addresses import IPAddress
from externalip.core.claims import StatusLedger, first_placements, wants_from_claims
from externalip.core.desired import plan
from externalip.core.model import ClaimStatus
from externalip.core.services import ServiceView
from externalip.scheduler.conflicts import MEMORY
from externalip.scheduler.conflicts import Conflicts as Memory
from tests.unit.test_agent_claims import claim
from tests.unit.test_core_desired import converge, lb, world

MAC = b"\x02\xaa\x00\x00\x00\x01"
IP = ipaddress.ip_address


def test_only_first_placements_are_probed() -> None:
    fresh = claim("fresh", "192.0.2.5/32")
    takeover = claim("takeover", "192.0.2.6/32",
                     status=ClaimStatus(ready=True, holder="n2", since="T"))
    refused = claim("refused", "192.0.2.7/32", status=ClaimStatus(message="no link"))
    present = claim("present", "192.0.2.8/32")  # a restarted agent finds it on the node
    claims = [fresh, takeover, refused, present]
    wants, _ = wants_from_claims(claims, "n1", "eth0")
    probed = first_placements(claims, wants, {IP("192.0.2.8")})
    assert [w.owners for w in probed] == [("fresh",), ("refused",)]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_a_conflict_is_not_placed_and_is_reported_with_the_mac() -> None:
    asked: list[set[IPAddress]] = []

    async def prober(link: str, ips: Collection[IPAddress]) -> dict[IPAddress, bytes]:
        asked.append(set(ips))
        return {IP("192.0.2.5"): MAC}

    clock = Clock()
    conflicts = Conflicts(prober, clock)
    claims = [claim("a", "192.0.2.5/32"), claim("b", "192.0.2.9/32")]
    wants, _ = wants_from_claims(claims, "n1", "eth0")
    kept = await conflicts.screen(claims, wants, set())
    assert [w.owners for w in kept] == [("b",)]
    assert conflicts.macs() == {"a": "02:aa:00:00:00:01"}
    assert "02:aa:00:00:00:01" in conflicts.problems()["a"]
    status = StatusLedger().due(claims, "n1", held={"b"}, problems=conflicts.problems(),
                                now="T", conflicts=conflicts.macs())["a"]
    assert not status.ready and status.conflict == "02:aa:00:00:00:01"
    assert status.to_dict()["conflict"] == "02:aa:00:00:00:01"
    # the verdict stands for a while: no probe on every reconcile (b is on the node now)
    placed = {IP("192.0.2.9")}
    assert [w.owners for w in await conflicts.screen(claims, wants, placed)] == [("b",)]
    assert len(asked) == 1 and asked[0] == {IP("192.0.2.5"), IP("192.0.2.9")}
    clock.now += HOLD_OFF + 1
    await conflicts.screen(claims, wants, placed)
    assert len(asked) == 2 and asked[1] == {IP("192.0.2.5")}


async def test_without_probing_or_when_the_probe_fails_addresses_are_placed() -> None:
    async def broken(link: str, ips: Collection[IPAddress]) -> dict[IPAddress, bytes]:
        raise OSError("no NET_RAW")

    claims = [claim("a", "192.0.2.5/32")]
    wants, _ = wants_from_claims(claims, "n1", "eth0")
    for prober in (None, broken):
        assert await Conflicts(prober).screen(claims, wants, set()) == wants


def test_a_foreign_announcement_of_a_held_address_is_reported_once_a_minute() -> None:
    clock = Clock()
    conflicts = Conflicts(None, clock)
    conflicts.heard(IP("192.0.2.5"), MAC, ("a",))
    conflicts.heard(IP("192.0.2.5"), MAC, ("a",))
    reports = conflicts.heard_reports()
    assert [name for name, _ in reports] == ["a"] and "02:aa:00:00:00:01" in reports[0][1]
    assert conflicts.heard_reports() == []
    clock.now += 61
    conflicts.heard(IP("192.0.2.5"), MAC, ("a",))
    assert len(conflicts.heard_reports()) == 1


def test_the_pool_skips_a_conflicted_address_and_the_service_gets_another() -> None:
    w = converge(world([lb("a")]))
    assert w.services["ns/a"].ingress == ("192.0.2.200",)
    conflicted = {IP("192.0.2.200"): "MAC 02:aa:00:00:00:01, seen from node n1"}
    p = plan(w.__class__(**{**w.__dict__, "conflicts": conflicted}))
    assert [c.spec.cidr for c in p.create] == ["192.0.2.201/32"]
    assert p.delete == ["192-0-2-200-32"]
    assert any(e.reason == "AddressConflict" and "02:aa" in e.message for e in p.events)
    fresh = plan(world([lb("b")], conflicts=conflicted))
    assert [c.spec.cidr for c in fresh.create] == ["192.0.2.201/32"]
    # asked for by name: kept, with the Warning
    named = ServiceView(namespace="ns", name="n", created="n", load_balancer=True,
                        ports=frozenset({("TCP", 80)}), requested=("192.0.2.200",))
    p = plan(world([named], conflicts=conflicted))
    assert [c.spec.cidr for c in p.create] == ["192.0.2.200/32"]
    assert {e.reason for e in p.events if e.type == "Warning"} == {"AddressConflict"}


def test_the_scheduler_remembers_a_conflict_after_its_claim_is_gone() -> None:
    clock = Clock()
    memory = Memory(clock)
    obj = {"spec": {"cidr": "192.0.2.200/32", "nodeName": "n1"},
           "status": {"ready": False, "conflict": "02:aa:00:00:00:01"}}
    assert memory.observe({"c": obj}) == {IP("192.0.2.200"): "MAC 02:aa:00:00:00:01, "
                                                             "seen from node n1"}
    clock.now += MEMORY - 1
    assert IP("192.0.2.200") in memory.observe({})
    clock.now += 2
    assert memory.observe({}) == {}
