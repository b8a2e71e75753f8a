"""The scheduler's writer, driven through `apply(plan)` over a mock API server."""

from __future__ import annotations

from typing import Any

import httpx2 as httpx
from prometheus_client import REGISTRY

from externalip.core.desired import Plan
from externalip.core.model import Claim, ClaimSpec
from externalip.kube.api import Api
from externalip.scheduler.writer import Writer

HTML_502 = b"<html><body><h1>502 Bad Gateway</h1></body></html>"


def claim_object(version: str, node: str = "n1") -> dict[str, Any]:
    return {"apiVersion": "ipcontroller.ext/v1", "kind": "IpClaim",
            "metadata": {"name": "c", "resourceVersion": version},
            "spec": {"cidr": "192.0.2.1/32", "nodeName": node}}


def writer(answer: httpx.Response, claims: dict[str, Any],
           services: dict[str, Any] | None = None) -> tuple[Writer, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer

    async def no_wait(_seconds: float) -> None:
        return None

    api = Api(httpx.AsyncClient(transport=httpx.MockTransport(handle),
                                base_url="https://api.test"), sleep=no_wait)
    return Writer(api, claims=claims, services=services or {}, pools={},
                  may_write=lambda: True), seen


def move(version: str) -> Plan:
    return Plan(update=[Claim("c", ClaimSpec(cidr="192.0.2.1/32", node_name="n2"),
                              resource_version=version)])


async def test_a_write_response_never_replaces_a_newer_cached_object() -> None:
    store = {"c": {**claim_object("256"), "status": {"ready": True}}}
    w, _ = writer(httpx.Response(200, json=claim_object("255", "n2")), store)
    assert await w.apply(move("250")) == 0
    assert store["c"]["metadata"]["resourceVersion"] == "256"
    w, _ = writer(httpx.Response(200, json=claim_object("300", "n2")), store)
    assert await w.apply(move("256")) == 0
    assert store["c"]["metadata"]["resourceVersion"] == "300"
    created: dict[str, Any] = {}
    w, _ = writer(httpx.Response(201, json=claim_object("1")), created)
    assert await w.apply(Plan(create=[Claim("c", ClaimSpec(cidr="192.0.2.1/32"))])) == 0
    assert "c" in created


async def test_an_html_error_page_is_a_failed_write_to_retry_not_a_crash() -> None:
    services = {"ns/web": {"metadata": {"name": "web", "namespace": "ns",
                                        "resourceVersion": "4"}}}
    w, seen = writer(httpx.Response(502, content=HTML_502), {}, services)
    plan = Plan(ingress={"ns/web": ("192.0.2.1",)})
    assert await w.apply(plan) == 1  # counted as failed: the next pass retries it
    assert len(seen) == 1  # a merge patch is not repeated blindly
    assert services["ns/web"]["metadata"]["resourceVersion"] == "4"


async def test_a_lost_reservation_race_is_not_a_failure() -> None:
    conflict = httpx.Response(409, json={"kind": "Status", "reason": "AlreadyExists",
                                         "message": "already exists", "code": 409})
    store: dict[str, Any] = {}
    w, _ = writer(conflict, store)
    assert await w.apply(Plan(create=[Claim("c", ClaimSpec(cidr="192.0.2.1/32"))])) == 0
    assert store == {}


async def test_a_hand_over_from_a_draining_node_is_no_failover() -> None:
    def failovers() -> float:
        return REGISTRY.get_sample_value("externalip_failovers_total") or 0.0

    before = failovers()
    w, _ = writer(httpx.Response(200, json=claim_object("2", "n2")), {"c": claim_object("1")})
    drained = Plan(update=[Claim("c", ClaimSpec(cidr="192.0.2.1/32", node_name="n2",
                                                handover_from="n1"), resource_version="1")])
    assert await w.apply(drained) == 0
    assert failovers() == before
    w, _ = writer(httpx.Response(200, json=claim_object("2", "n2")), {"c": claim_object("1")})
    assert await w.apply(move("1")) == 0
    assert failovers() == before + 1
