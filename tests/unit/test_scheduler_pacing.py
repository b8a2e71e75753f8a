"""When the scheduler runs a pass and retries a write (issue 12, items 5 and 8)."""

from __future__ import annotations

from typing import Any

from externalip.core.desired import Plan
from externalip.core.model import Claim, ClaimSpec
from externalip.core.views import service_view
from externalip.kube.informer import ADDED, DELETED, MODIFIED
from externalip.scheduler import relevance, slim
from externalip.scheduler.backoff import Backoff
from externalip.scheduler.memo import Memo
from externalip.scheduler.refusals import Refusals


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


CLAIM = Claim("192-0-2-10-32", ClaimSpec(cidr="192.0.2.10/32", node_name="n1"))


def test_a_failing_write_backs_off_alone_and_success_forgets_it() -> None:
    clock = Clock()
    backoff = Backoff(clock)
    plan = Plan(create=[CLAIM], ingress={"ns/ok": ("192.0.2.11",)})
    services: dict[str, Any] = {"ns/ok": {"status": {"loadBalancer": {"ingress": [
        {"ip": "192.0.2.11"}]}}}}
    delays = []
    for _ in range(5):
        todo = backoff.hold_back(plan)
        assert todo.create == [CLAIM]
        backoff.record(todo, plan, {}, services)  # the create failed, the ingress landed
        delays.append(backoff.next_due())
        # other passes (any number of them) do not retry it before it is due
        assert backoff.hold_back(plan).create == []
        assert backoff.hold_back(plan).ingress == plan.ingress
        clock.now += delays[-1] or 0
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0]
    todo = backoff.hold_back(plan)
    backoff.record(todo, plan, {CLAIM.name: CLAIM.to_object()}, services)
    assert backoff.next_due() is None and backoff.waiting() == 0


def test_a_write_no_longer_planned_forgets_its_delay() -> None:
    backoff = Backoff(Clock())
    plan = Plan(create=[CLAIM])
    backoff.record(plan, plan, {}, {})
    assert backoff.waiting() == 1
    backoff.record(Plan(), Plan(), {}, {})
    assert backoff.waiting() == 0


def node(heartbeat: str, ready: str = "True", labels: dict[str, str] | None = None
         ) -> dict[str, Any]:
    return {"metadata": {"name": "n1", "labels": labels or {}, "resourceVersion": heartbeat},
            "status": {"conditions": [{"type": "Ready", "status": ready,
                                       "lastHeartbeatTime": heartbeat}]}}


def test_only_changes_the_plan_reads_count() -> None:
    nodes = relevance.Relevance(relevance.node_digest)
    assert nodes.changed(ADDED, node("1"))
    assert not nodes.changed(MODIFIED, node("2"))  # a heartbeat
    assert nodes.changed(MODIFIED, node("3", ready="False"))
    assert nodes.changed(MODIFIED, node("4", ready="False", labels={"a": "b"}))
    assert nodes.changed(DELETED, node("5"))

    claims = relevance.Relevance(lambda o: relevance.claim_digest(Claim.from_object(o)))
    obj = CLAIM.to_object()
    assert claims.changed(ADDED, obj)
    assert claims.changed(MODIFIED, {**obj, "status": {"ready": True, "holder": "n1"}})
    assert not claims.changed(MODIFIED, {**obj, "status": {"ready": True, "holder": "n1",
                                                           "since": "2026-01-01T00:00:00Z"}})
    assert claims.changed(MODIFIED, {**obj, "status": {"ready": False,
                                                       "message": "interface missing"}})

    services = relevance.Relevance(lambda o: service_view(o, "externalip.io/lb", True))
    svc = {"metadata": {"name": "a", "namespace": "ns", "resourceVersion": "1"},
           "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}}
    assert services.changed(ADDED, svc)
    assert not services.changed(MODIFIED, {**svc, "metadata": {**svc["metadata"],
                                                                "resourceVersion": "2"}})
    assert services.changed(MODIFIED, {**svc, "spec": {**svc["spec"], "ports": [{"port": 81}]}})


def claim_obj(node: str, version: int, ready: bool = False, message: str = "") -> dict[str, Any]:
    obj = Claim("c", ClaimSpec(cidr="192.0.2.10/32", node_name=node)).to_object()
    obj["metadata"]["resourceVersion"] = str(version)
    obj["status"] = {"ready": ready, "message": message} if message or ready else {}
    return obj


def test_refusals_are_blamed_on_the_node_that_wrote_them_and_expire() -> None:
    clock = Clock()
    refusals = Refusals(clock)
    assert refusals.observe({"c": claim_obj("n1", 1)}) == {}
    refused = refusals.observe({"c": claim_obj("n1", 2, message="no interface eth9")})
    assert refused == {"192.0.2.10/32": frozenset({"n1"})}
    # moved to n2: the status still says n1's refusal, which is not n2's
    assert refusals.observe({"c": claim_obj("n2", 3, message="no interface eth9")}) == refused
    # n2 refuses too (a later write), for twice as long
    both = refusals.observe({"c": claim_obj("n2", 4, message="no interface eth9")})
    assert both == {"192.0.2.10/32": frozenset({"n1", "n2"})}
    clock.now += 5.1  # n1's 5 s are over, n2's 10 s are not
    assert refusals.observe({"c": claim_obj("n2", 4, message="no interface eth9")}) == {
        "192.0.2.10/32": frozenset({"n2"})}
    clock.now += 5
    assert refusals.observe({"c": claim_obj("n3", 5)}) == {}


def test_a_view_is_made_once_per_object_version() -> None:
    made: list[str] = []

    def convert(obj: dict[str, Any]) -> str:
        made.append(obj["v"])
        return obj["v"]

    memo = Memo(convert)
    first, second = {"v": "1"}, {"v": "2"}
    assert memo.view("a", first) == "1"
    assert memo.over({"a": first, "b": second}) == {"a": "1", "b": "2"}
    assert memo.over({"a": first, "b": second}) == {"a": "1", "b": "2"}
    assert made == ["1", "2"]  # nothing converted twice
    newer = {"v": "3"}  # the informer replaced a's object
    assert memo.over({"a": newer}) == {"a": "3"}
    assert memo.over({"a": newer, "b": second}) == {"a": "3", "b": "2"}
    assert made == ["1", "2", "3", "2"]  # b was forgotten when it left the store


def test_the_slim_service_cache_keeps_all_the_view_reads() -> None:
    """Every annotation service_view reads survives the cache's slimming
    (ours and MetalLB's aliases); others' annotations do not."""
    notes = {"externalip.io/pool": "p", "metallb.universe.tf/loadBalancerIPs": "192.0.2.7",
             "metallb.io/allow-shared-ip": "k", "external-ip": "auto",
             "kubectl.kubernetes.io/last-applied-configuration": "{...}"}
    svc = {"metadata": {"name": "a", "namespace": "ns", "annotations": dict(notes),
                        "managedFields": [{}]},
           "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}}
    full = service_view({**svc, "metadata": {**svc["metadata"]}}, "externalip.io/lb", True)
    slimmed = slim.service(svc)
    assert "kubectl.kubernetes.io/last-applied-configuration" not in \
        slimmed["metadata"]["annotations"]
    assert "managedFields" not in slimmed["metadata"]
    assert service_view(slimmed, "externalip.io/lb", True) == full
