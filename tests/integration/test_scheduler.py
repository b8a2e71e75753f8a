"""The scheduler as a process under its shipped service account, against the
real API server, with fake agents (Leases written by the test)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from externalip_lab.controlplane import ControlPlane
from tests.helpers import wait_for
from tests.integration.scheduler_harness import (
    FakeAgents,
    api_requests,
    apply,
    claims,
    events,
    get,
    ingress,
    lb_service,
    pool,
    scheduler,
    wait_ingress,
)

pytestmark = pytest.mark.integration


def test_lb_service_gets_an_ip_and_releases_it(clean: ControlPlane, agents: FakeAgents,
                                               unique: str, tmp_path: Path) -> None:
    cp = clean
    apply(cp, pool("p1", "192.0.2.0/24", [["192.0.2.10", "192.0.2.12"]]))
    with scheduler(cp, tmp_path):
        apply(cp, lb_service(unique, "web"))
        ip = wait_ingress(cp, unique, "web")
        assert ip == "192.0.2.10"
        assert ingress(cp, unique, "web") == [{"ip": ip, "ipMode": "VIP"}]
        claim = claims(cp)["192-0-2-10-32"]
        assert claim["spec"]["services"] == [f"{unique}/web"]
        assert claim["spec"]["pool"] == "p1"
        assert claim["spec"]["nodeName"] in agents.nodes
        assert claim["metadata"]["labels"]["ipnode"] == claim["spec"]["nodeName"]
        svc = get(cp, "service", "web", "-n", unique)
        assert "externalIPs" not in svc["spec"]  # LB IPs live in status only
        cp.kubectl("delete", "service", "web", "-n", unique)
        wait_for(lambda: "192-0-2-10-32" not in claims(cp), what="claim released")
        # an allocation is no news (its status says it): no Event in a whole life
        assert events(cp, unique, "web") == []


def test_external_ips_one_claim_per_ip_shared_and_orphans_cleaned(
        clean: ControlPlane, agents: FakeAgents, unique: str, tmp_path: Path) -> None:
    cp = clean
    ext = {"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": "a", "namespace": unique},
           "spec": {"ports": [{"port": 80}], "externalIPs": ["198.51.100.7", "198.51.100.8"]}}
    other = {**ext, "metadata": {"name": "b", "namespace": unique},
             "spec": {"ports": [{"port": 81}], "externalIPs": ["198.51.100.7"]}}
    with scheduler(cp, tmp_path):
        apply(cp, ext, other)
        wait_for(lambda: {"198-51-100-7-32", "198-51-100-8-32"} <= set(claims(cp)),
                 what="claims for both IPs")
        wait_for(lambda: claims(cp)["198-51-100-7-32"]["spec"].get("services") ==
                 [f"{unique}/a", f"{unique}/b"], what="claim shared by a and b")
    # the scheduler is down while a Service goes away: its claim is orphaned
    cp.kubectl("delete", "service", "a", "-n", unique)
    assert "198-51-100-8-32" in claims(cp)
    with scheduler(cp, tmp_path):
        wait_for(lambda: "198-51-100-8-32" not in claims(cp), what="orphan deleted")
        wait_for(lambda: claims(cp)["198-51-100-7-32"]["spec"]["services"] ==
                 [f"{unique}/b"], what="shared claim keeps b")


def test_auto_annotation_appends_an_ip_and_seed_pool_skips_the_excluded_one(
        clean: ControlPlane, agents: FakeAgents, unique: str, tmp_path: Path) -> None:
    cp = clean
    cp.kubectl("apply", "-f", str(Path(__file__).parents[2] / "examples" / "ip-pool.yml"))
    names = [f"auto{i}" for i in range(5)]
    with scheduler(cp, tmp_path):
        for name in names:
            apply(cp, {"apiVersion": "v1", "kind": "Service",
                       "metadata": {"name": name, "namespace": unique,
                                    "annotations": {"external-ip": "auto"}},
                       "spec": {"ports": [{"port": 80}]}})
            time.sleep(0.2)  # creation order decides who waits

        def external(name: str) -> list[str]:
            return list(get(cp, "service", name, "-n", unique)["spec"].get("externalIPs") or [])
        wait_for(lambda: all(external(n) for n in names[:4]), what="four allocations")
        got = sorted(external(n)[0] for n in names[:4])
        assert got == ["192.168.0.249", "192.168.0.250", "192.168.0.252", "192.168.0.253"]
        assert external("auto4") == []  # the pool is exhausted, .251 is never handed out
        wait_for(lambda: any(e.startswith("PoolExhausted") for e in events(cp, unique, "auto4")),
                 what="PoolExhausted event")
        status = get(cp, "ipclaimpool", "test-pool")["status"]
        assert (status["total"], status["used"], status["free"]) == (4, 4, 0)
        freed = external("auto1")[0]
        cp.kubectl("delete", "service", "auto1", "-n", unique)
        wait_for(lambda: external("auto4") == [freed], what="waiting Service gets the freed IP")


def test_requested_ips_dual_stack_sharing_and_conflicts(
        clean: ControlPlane, agents: FakeAgents, unique: str, tmp_path: Path) -> None:
    cp = clean
    apply(cp, pool("v4", "192.0.2.0/24", [["192.0.2.20", "192.0.2.29"]]),
          pool("v6", "2001:db8:1::/120", [["2001:db8:1::10", "2001:db8:1::1f"]]))
    with scheduler(cp, tmp_path):
        apply(cp,
              lb_service(unique, "dual", ipFamilyPolicy="RequireDualStack",
                         ipFamilies=["IPv4", "IPv6"]),
              lb_service(unique, "req", loadBalancerIP="192.0.2.25"),
              lb_service(unique, "req2", annotations={"externalip.io/ips":
                                                      "192.0.2.27,2001:db8:1::1a"},
                         ipFamilyPolicy="PreferDualStack", ipFamilies=["IPv4", "IPv6"]),
              lb_service(unique, "share1", annotations={"externalip.io/sharing-key": "k",
                                                        "externalip.io/ips": "192.0.2.28"}),
              {**lb_service(unique, "share2",
                            annotations={"externalip.io/sharing-key": "k",
                                         "externalip.io/ips": "192.0.2.28"}),
               "spec": {"type": "LoadBalancer", "ports": [{"port": 443}]}},
              lb_service(unique, "thief", annotations={"externalip.io/ips": "192.0.2.28"}),
              lb_service(unique, "outside", loadBalancerIP="203.0.113.5"))
        wait_for(lambda: len(ingress(cp, unique, "dual")) == 2, what="dual-stack ingress")
        assert {i["ip"] for i in ingress(cp, unique, "dual")} == {"192.0.2.20", "2001:db8:1::10"}
        assert wait_ingress(cp, unique, "req") == "192.0.2.25"
        wait_for(lambda: len(ingress(cp, unique, "req2")) == 2, what="requested dual")
        assert [i["ip"] for i in ingress(cp, unique, "req2")] == ["192.0.2.27",
                                                                   "2001:db8:1::1a"]
        assert wait_ingress(cp, unique, "share1") == wait_ingress(cp, unique, "share2")
        assert claims(cp)["192-0-2-28-32"]["spec"]["sharingKey"] == "k"
        wait_for(lambda: any(e.startswith("SharingConflict")
                             for e in events(cp, unique, "thief")), what="conflict event")
        wait_for(lambda: any(e.startswith("RequestedIPUnavailable")
                             for e in events(cp, unique, "outside")), what="unavailable event")
        assert ingress(cp, unique, "thief") == [] and ingress(cp, unique, "outside") == []


def test_failover_moves_claims_within_the_lease_and_does_not_flap_back(
        clean: ControlPlane, agents: FakeAgents, unique: str, tmp_path: Path) -> None:
    cp = clean
    apply(cp, pool("p", "192.0.2.0/24", [["192.0.2.40", "192.0.2.59"]]))
    with scheduler(cp, tmp_path):
        apply(cp, *(lb_service(unique, f"s{i}") for i in range(6)))
        wait_for(lambda: sum(1 for c in claims(cp).values() if c["spec"].get("nodeName")) == 6,
                 what="six placed claims")
        per_node = {n: sum(1 for c in claims(cp).values() if c["spec"]["nodeName"] == n)
                    for n in agents.nodes}
        assert per_node == {"node-a": 2, "node-b": 2, "node-c": 2}  # fair spread
        agents.kill("node-a")
        killed = time.monotonic()
        wait_for(lambda: all(c["spec"]["nodeName"] != "node-a" for c in claims(cp).values()),
                 within=15, what="claims moved off the dead node")
        print(f"failover detected and written {time.monotonic() - killed:.2f}s after the "
              f"last renewal (lease duration {agents.duration}s)")
        before = {n: c["spec"]["nodeName"] for n, c in claims(cp).items()}
        agents.revive("node-a")
        time.sleep(4)
        assert {n: c["spec"]["nodeName"] for n, c in claims(cp).items()} == before


def test_drained_and_excluded_nodes_get_nothing(
        clean: ControlPlane, agents: FakeAgents, unique: str, tmp_path: Path) -> None:
    cp = clean
    apply(cp, pool("p", "192.0.2.0/24", [["192.0.2.60", "192.0.2.69"]]))
    cp.kubectl("label", "node", "node-a", "externalip.io/drain=true")  # a cordon would not do
    cp.kubectl("label", "node", "node-b",
               "node.kubernetes.io/exclude-from-external-load-balancers=")
    with scheduler(cp, tmp_path):
        apply(cp, *(lb_service(unique, f"s{i}") for i in range(3)))
        wait_for(lambda: sum(1 for c in claims(cp).values() if c["spec"].get("nodeName")) == 3,
                 what="placed")
        assert {c["spec"]["nodeName"] for c in claims(cp).values()} == {"node-c"}


def test_invalid_pool_gets_a_condition_not_a_crash(clean: ControlPlane, agents: FakeAgents,
                                                   unique: str, tmp_path: Path) -> None:
    cp = clean
    apply(cp, pool("reversed6", "2001:db8:2::/120", [["2001:db8:2::20", "2001:db8:2::10"]]),
          pool("ok", "192.0.2.0/24", [["192.0.2.70", "192.0.2.70"]]))
    with scheduler(cp, tmp_path) as proc:
        apply(cp, lb_service(unique, "svc"))
        assert wait_ingress(cp, unique, "svc") == "192.0.2.70"

        def condition() -> dict[str, str]:
            status = get(cp, "ipclaimpool", "reversed6").get("status") or {}
            return next(iter(status.get("conditions") or []), {})
        wait_for(lambda: condition().get("status") == "False", what="Valid=False")
        assert "reversed" in condition()["message"]
        assert proc.poll() is None


def test_pool_counts_wait_for_their_pace_and_exhaustion_does_not(
        clean: ControlPlane, agents: FakeAgents, unique: str, tmp_path: Path) -> None:
    """Issue 16: Services allocated one after another do not each rewrite the
    pool's counts (the pace here is longer than the test); the pool running out
    is written at once, with the counts of that moment."""
    cp = clean
    apply(cp, pool("paced", "192.0.2.0/24", [["192.0.2.100", "192.0.2.105"]]))
    with scheduler(cp, tmp_path, "--status-interval=10m"):
        def status() -> dict[str, Any]:
            return dict(get(cp, "ipclaimpool", "paced").get("status") or {})
        wait_for(lambda: status().get("free") == 6, what="the pool's first status")
        before = api_requests(cp)
        for i in range(5):  # one at a time: a pass each
            apply(cp, lb_service(unique, f"s{i}"))
            wait_ingress(cp, unique, f"s{i}")
        assert (status()["used"], status()["free"]) == (0, 6)  # held back, on purpose
        apply(cp, lb_service(unique, "last"))
        wait_for(lambda: get_condition(status(), "Exhausted") == "True", what="Exhausted")
        assert (status()["total"], status()["used"], status()["free"]) == (6, 6, 0)
        writes = api_requests(cp) - before
        assert writes[("PATCH", "ipclaimpools/status")] == 1, writes


def get_condition(status: dict[str, Any], kind: str) -> str:
    return next((c["status"] for c in status.get("conditions") or () if c["type"] == kind), "")
