"""The numbers and reasons `externalip status` reports, from known objects."""

from __future__ import annotations

import datetime
import json
from typing import Any

from externalip.core import status
from externalip.core.model import Claim, Pool
from externalip.programs.status import render_json, render_table

NOW = datetime.datetime(2026, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)
SEED_POOL = {"cidr": "192.168.0.248/29",
             "ranges": [["192.168.0.249", "192.168.0.250"], ["192.168.0.252", "192.168.0.253"]]}


def pool(name: str, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": spec}


def claim(ip: str, node: str = "", ready: bool = False, pool_name: str = "",
          services: tuple[str, ...] = ()) -> dict[str, Any]:
    spec: dict[str, Any] = {"cidr": f"{ip}/32", "nodeName": node, "pool": pool_name,
                            "services": list(services)}
    return {"metadata": {"name": ip.replace(".", "-") + "-32"}, "spec": spec,
            "status": {"ready": ready}}


def lease(name: str, seconds_ago: float, duration: int = 6, holder: str = "") -> dict[str, Any]:
    renewed = (NOW - datetime.timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {"metadata": {"name": name},
            "spec": {"renewTime": renewed, "leaseDurationSeconds": duration,
                     "holderIdentity": holder or name}}


def service(ns: str, name: str, type_: str = "ClusterIP", *, external: tuple[str, ...] = (),
            ingress: tuple[str, ...] = (), annotations: dict[str, str] | None = None,
            lb_class: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": type_, "externalIPs": list(external)}
    if lb_class:
        spec["loadBalancerClass"] = lb_class
    return {"metadata": {"namespace": ns, "name": name, "annotations": annotations or {}},
            "spec": spec,
            "status": {"loadBalancer": {"ingress": [{"ip": ip} for ip in ingress]}}}


def sizes(**spec: Any) -> tuple[int, int, int]:
    (row,) = status.pool_rows([Pool.from_object(pool("p", **spec))], [])
    return row.total, row.used, row.free


def test_pool_sizes_follow_the_seed_rules() -> None:
    assert sizes(**SEED_POOL)[0] == 4  # .251 excluded
    # without ranges: the whole network minus its network address
    assert sizes(cidr="192.0.2.0/29")[0] == 7
    assert sizes(cidr="192.0.2.7/32")[0] == 1
    assert sizes(cidr="2001:db8::/120")[0] == 255
    # avoidBuggyIPs drops every .0 and .255 in the ranges
    assert sizes(cidr="198.51.100.0/23", avoidBuggyIPs=True)[0] == 511 - 3


def test_used_counts_every_claim_inside_the_pool() -> None:
    pools = [Pool.from_object(pool("seed", **SEED_POOL))]
    claims = [Claim.from_object(c) for c in (
        claim("192.168.0.249", pool_name="seed"),
        claim("192.168.0.250"),  # asked for by hand, inside the pool: not free either
        claim("192.168.0.251"),  # in the cidr but in the excluded gap
        claim("10.0.0.1"))]
    (row,) = status.pool_rows(pools, claims)
    assert (row.total, row.used, row.free) == (4, 2, 2)


def test_an_unusable_pool_says_why() -> None:
    # CRD validation cannot order IPv6 ranges; the scheduler refuses them
    pools = [Pool.from_object(pool("v6", cidr="2001:db8::/120",
                                   ranges=[["2001:db8::9", "2001:db8::1"]]))]
    (row,) = status.pool_rows(pools, [])
    assert row.total == 0 and "reversed" in row.error
    report = status.Report(pools=[row])
    assert "pool v6 is unusable: " in render_table(report)


def test_nodes_show_claims_ready_and_lease_liveness() -> None:
    report = status.build(
        pools=[], claims=[claim("192.0.2.1", "a", True), claim("192.0.2.2", "a", False),
                          claim("192.0.2.3", "b", True), claim("192.0.2.4")],
        nodes=[{"metadata": {"name": "a"}}, {"metadata": {"name": "b"}},
               {"metadata": {"name": "c"}}],
        leases=[lease("a", 1.5), lease("b", 30), lease("externalip-scheduler", 2, 15, "pod-1")],
        services=[], events=[], now=NOW)
    rows = {n.name: n for n in report.nodes}
    assert (rows["a"].claims, rows["a"].ready, rows["a"].alive) == (2, 1, True)
    assert rows["a"].lease_age == 1.5
    assert (rows["b"].claims, rows["b"].alive) == (1, False)
    assert rows["c"].lease_age is None and not rows["c"].alive
    assert rows[""].claims == 1  # unassigned
    assert "externalip-scheduler" not in rows  # the leader Lease is not a node
    assert report.leader == status.Leader("pod-1", 2.0, True)


def test_waiting_services_and_why() -> None:
    claims = [claim("192.0.2.10", "a", True, services=("web/ok",)),
              claim("192.0.2.11", "b", True, services=("web/dead-node",)),
              claim("192.0.2.12", "a", False, services=("web/unconfirmed",)),
              claim("192.0.2.13", "", False, services=("web/unplaced",))]
    services = [
        service("web", "ok", "LoadBalancer", ingress=("192.0.2.10",)),
        service("web", "dead-node", external=("192.0.2.11",)),
        service("web", "unconfirmed", external=("192.0.2.12",)),
        service("web", "unplaced", external=("192.0.2.13",)),
        service("web", "no-claim", external=("192.0.2.14",)),
        service("web", "lb", "LoadBalancer"),
        service("web", "auto", annotations={"external-ip": "auto"}),
        service("web", "other-class", "LoadBalancer", lb_class="example.com/other"),
        service("web", "plain"),
    ]
    events = [{"type": "Warning", "reason": "PoolExhausted", "message": "no free address",
               "reportingComponent": "externalip-scheduler",
               "lastTimestamp": "2026-01-01T11:00:00Z",
               "involvedObject": {"kind": "Service", "namespace": "web", "name": "lb"}},
              {"type": "Warning", "reason": "Unrelated", "message": "someone else's",
               "reportingComponent": "other-controller", "lastTimestamp": "2026-01-01T11:59:00Z",
               "involvedObject": {"kind": "Service", "namespace": "web", "name": "lb"}}]
    report = status.build(
        pools=[pool("p", cidr="192.0.2.0/24")], claims=claims, nodes=[],
        leases=[lease("a", 1), lease("b", 60), lease("externalip-scheduler", 1, 15)],
        services=services, events=events, now=NOW)
    why = {w.service: (w.wants, w.reason) for w in report.waiting}
    assert set(why) == {"web/dead-node", "web/unconfirmed", "web/unplaced", "web/no-claim",
                        "web/lb", "web/auto"}
    assert "expired" in why["web/dead-node"][1]
    assert "not confirmed" in why["web/unconfirmed"][1]
    assert "not placed" in why["web/unplaced"][1]
    assert "no IpClaim" in why["web/no-claim"][1]
    assert why["web/lb"] == ("LoadBalancer", "PoolExhausted: no free address")
    assert why["web/auto"] == ("external-ip=auto", "not allocated yet")


def test_allocation_reasons_without_an_event() -> None:
    lb = [service("ns", "lb", "LoadBalancer")]

    def reason(pools: list[dict[str, Any]], leases: list[dict[str, Any]],
               claims: tuple[dict[str, Any], ...] = ()) -> str:
        report = status.build(pools=pools, claims=list(claims), nodes=[], leases=leases,
                              services=lb, events=[], now=NOW)
        return report.waiting[0].reason
    leader = [lease("externalip-scheduler", 1, 15)]
    assert reason([], leader) == "no IpClaimPool exists"
    assert "full" in reason([pool("p", cidr="192.0.2.1/32")], leader,
                            (claim("192.0.2.1", pool_name="p"),))
    assert "autoAssign" in reason([pool("p", cidr="192.0.2.0/24", autoAssign=False)], leader)
    assert "scheduler" in reason([pool("p", cidr="192.0.2.0/24")], [])
    assert "scheduler" in reason([pool("p", cidr="192.0.2.0/24")],
                                 [lease("externalip-scheduler", 60, 15)])


def test_table_and_json_render_the_same_report() -> None:
    report = status.build(
        pools=[pool("seed", **SEED_POOL)], claims=[claim("192.168.0.249", "a", True, "seed")],
        nodes=[{"metadata": {"name": "a"}}], leases=[lease("a", 2)],
        services=[service("ns", "lb", "LoadBalancer")], events=[], now=NOW)
    table = render_table(report)
    assert "seed   192.168.0.248/29   4       1      3      true" in table
    assert "a      2s" in table
    assert "ns/lb" in table and "SCHEDULER LEADER: none" in table
    data = json.loads(render_json(report))
    assert data["pools"][0] == {"name": "seed", "cidr": "192.168.0.248/29", "total": 4,
                                "used": 1, "free": 3, "auto_assign": True, "error": ""}
    assert data["nodes"][0]["lease_age"] == 2.0
    assert data["waiting"][0]["service"] == "ns/lb"


def test_why_a_service_waits_comes_from_the_schedulers_own_plan() -> None:
    # a requested address outside every pool: the scheduler's plan refuses it;
    # status says so instead of "not allocated yet"
    asked = service("ns", "asked", "LoadBalancer",
                    annotations={"externalip.io/ips": "203.0.113.7"})
    report = status.build(pools=[pool("p", cidr="192.0.2.0/24")], claims=[], nodes=[],
                          leases=[lease("externalip-scheduler", 1, 15)], services=[asked],
                          events=[], now=NOW)
    (waiting,) = report.waiting
    assert waiting.reason.startswith("RequestedIPUnavailable: 203.0.113.7 is not in any pool")


def test_load_balancer_class_decides_which_services_are_ours() -> None:
    services = [service("ns", "mine", "LoadBalancer", lb_class="example.com/mine"),
                service("ns", "classless", "LoadBalancer"),
                service("ns", "theirs", "LoadBalancer", lb_class="example.com/theirs")]

    def waiting(**options: Any) -> set[str]:
        report = status.build(pools=[pool("p", cidr="192.0.2.0/24")], claims=[], nodes=[],
                              leases=[], services=services, events=[], now=NOW, **options)
        return {w.service for w in report.waiting}

    assert waiting() == {"ns/classless"}  # the default class only
    assert waiting(lb_class="example.com/mine") == {"ns/mine", "ns/classless"}
    assert waiting(lb_class="example.com/mine", default_class=False) == {"ns/mine"}


def test_claims_show_their_standbys() -> None:
    standing = claim("192.0.2.10", "a", True, services=("web/ok",))
    standing["spec"]["standbys"] = ["b", "c"]
    report = status.build(pools=[pool("p", cidr="192.0.2.0/24")], claims=[standing],
                          nodes=[], leases=[lease("a", 1)],
                          services=[service("web", "ok", "LoadBalancer", ingress=("192.0.2.10",))],
                          events=[], now=NOW)
    assert "192.0.2.10/32   a      true    b,c" in render_table(report)
    assert json.loads(render_json(report))["claims"][0]["standbys"] == ["b", "c"]


def test_status_reads_the_conditions_the_programs_write() -> None:
    """The Service's condition is the reason it waits; the IpNode's Healthy is shown."""
    waiting = service("ns", "web", "LoadBalancer")
    waiting["status"]["conditions"] = [{
        "type": "externalip.io/AddressAssigned", "status": "False", "reason": "PoolExhausted",
        "message": "no free IPv4 address in pool(s) p",
        "lastTransitionTime": "2026-01-01T00:00:00Z"}]
    node = {"metadata": {"name": "n1"}, "status": {"conditions": [
        {"type": "Healthy", "status": "False", "reason": "AgentDown", "message": ""}]}}
    report = status.build(pools=[pool("p", cidr="192.0.2.0/30")], claims=[], nodes=[node],
                          leases=[lease("n1", 1)], services=[waiting], events=[], now=NOW)
    assert report.waiting[0].reason == "PoolExhausted: no free IPv4 address in pool(s) p"
    assert report.nodes[0].healthy == "False"
    assert "HEALTHY" in render_table(report)
