"""The scheduler lives through every bad answer an API server or a proxy gives.

The scheduler runs in this process against the real API server, through a
gateway whose transport spoils its writes one after the other: an HTML 502,
truncated JSON in a 500, a 429 with Retry-After, a reset connection, an
exception nobody expected (which fails the whole pass), and 2 s of latency.
The Service still gets its address, exactly one claim is written, and the
failed pass is counted while the program lives on.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import httpx2 as httpx
import pytest
from lightkube.config import client_adapter
from prometheus_client import REGISTRY

from externalip.kube.api import Api
from externalip.kube.api.gateway import load_config
from externalip.scheduler.controller import Options, Scheduler
from externalip_lab.controlplane import ControlPlane
from tests.helpers import wait_for
from tests.integration.scheduler_harness import (
    NS,
    FakeAgents,
    apply,
    claims,
    lb_service,
    pool,
    wait_ingress,
)

pytestmark = pytest.mark.integration

FAULTS = ["html502", "truncated500", "busy429", "reset", "unexpected", "slow"]


class FaultyTransport(httpx.AsyncBaseTransport):
    """Spoils the next writes (Events aside), one fault each, then passes everything
    through."""

    def __init__(self, inner: httpx.AsyncBaseTransport, faults: list[str]) -> None:
        self.inner = inner
        self.faults = list(faults)
        self.spoiled: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        # Events are best effort (the recorder logs and drops their failures):
        # the faults go to the writes a pass depends on.
        if request.method == "GET" or not self.faults or "/events" in request.url.path:
            return await self.inner.handle_async_request(request)
        fault = self.faults.pop(0)
        self.spoiled.append(f"{fault} {request.method} {request.url.path}")
        if fault == "html502":
            return httpx.Response(502, content=b"<html><body>502 Bad Gateway</body></html>")
        if fault == "truncated500":
            return httpx.Response(500, content=b'{"kind":"Status","message":"etcdserver: ')
        if fault == "busy429":
            return httpx.Response(429, headers={"Retry-After": "1"}, content=b"")
        if fault == "reset":
            raise httpx.ReadError("Connection reset by peer", request=request)
        if fault == "unexpected":
            raise RuntimeError("an answer nobody foresaw")
        await asyncio.sleep(2)  # slow: the write goes through, late
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def faulty_api(cp: ControlPlane, faults: list[str]) -> tuple[Api, FaultyTransport]:
    config = load_config(str(cp.kubeconfig)).get()
    assert config is not None
    params = client_adapter.ConnectionParams().httpx_params(config)
    transport = FaultyTransport(httpx.AsyncHTTPTransport(verify=params["verify"]), faults)
    return Api(httpx.AsyncClient(**{**params, "transport": transport})), transport


def mine(cp: ControlPlane, ns: str) -> dict[str, list[str]]:
    """cidr -> Services of the claims that name Services of namespace `ns`."""
    return {c["spec"]["cidr"]: c["spec"]["services"] for c in claims(cp).values()
            if any(s.startswith(f"{ns}/") for s in c["spec"].get("services", []))}


def pass_failures() -> float:
    return REGISTRY.get_sample_value("externalip_pass_failures_total",
                                     {"loop": "scheduler"}) or 0


async def test_scheduler_survives_every_bad_answer_and_allocates_once(
        clean: ControlPlane, agents: FakeAgents, unique: str, tmp_path: Path) -> None:
    cp = clean
    apply(cp, pool("pf", "192.0.2.0/24", [["192.0.2.60", "192.0.2.69"]]))
    api, transport = faulty_api(cp, FAULTS)
    scheduler = Scheduler(api, Options(namespace=NS, monitor=1.0))
    failed_before = pass_failures()
    task = asyncio.create_task(scheduler.run())
    try:
        apply(cp, lb_service(unique, "web"), lb_service(unique, "api"))
        first = await asyncio.to_thread(wait_ingress, cp, unique, "web", 90)
        second = await asyncio.to_thread(wait_ingress, cp, unique, "api", 90)
        # settled: one claim per published address, for the Service it names
        await asyncio.to_thread(wait_for, lambda: len(mine(cp, unique)) == 2, 60, "2 claims")
        assert not task.done(), task  # the scheduler is still running
        assert transport.faults == [], transport.spoiled  # every fault was served
        assert pass_failures() >= failed_before + 1  # the unexpected one failed a pass
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await api.close()
    assert first != second
    assert mine(cp, unique) == {f"{first}/32": [f"{unique}/web"],
                                f"{second}/32": [f"{unique}/api"]}
