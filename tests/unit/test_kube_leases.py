"""The agent's node Lease (kube.leases.NodeLease) over a mock API server."""

from __future__ import annotations

from typing import Any

import httpx2 as httpx
import msgspec
import pytest

from externalip.kube.api import Api, ConflictError
from externalip.kube.leases import NodeLease


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


class LeaseServer:
    """One Lease with resourceVersions; answers 409 to a PUT with a stale one."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.version = 0
        self.calls: list[str] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(request.method)
        if request.method == "GET":
            return httpx.Response(200, json=self.lease) if self.lease else httpx.Response(
                404, json={"kind": "Status", "reason": "NotFound", "message": "not found"})
        body = msgspec.json.decode(request.content)
        sent = (body.get("metadata") or {}).get("resourceVersion")
        if request.method == "PUT" and sent != str(self.version):
            return httpx.Response(409, json={"kind": "Status", "reason": "Conflict",
                                             "message": "the object has been modified"})
        self.version += 1
        self.lease = {**body, "metadata": {**body["metadata"],
                                           "resourceVersion": str(self.version)}}
        return httpx.Response(201 if request.method == "POST" else 200, json=self.lease)

    def api(self) -> Api:
        return Api(httpx.AsyncClient(transport=httpx.MockTransport(self.handle),
                                     base_url="https://api.test"))


async def test_creates_then_renews_with_one_request_per_beat() -> None:
    server, clock = LeaseServer(), Clock()
    lease = NodeLease(server.api(), "externalip", "node-a", 5.5, clock=clock)
    await lease.renew()
    assert server.calls == ["GET", "POST"]
    assert server.lease is not None and server.lease["spec"]["leaseDurationSeconds"] == 6
    clock.t += 2
    assert lease.lapsed() == 2
    await lease.renew()
    assert server.calls[2:] == ["PUT"] and lease.lapsed() == 0


async def test_a_conflict_is_raised_and_the_next_beat_reads_the_lease_again() -> None:
    server, clock = LeaseServer(), Clock()
    lease = NodeLease(server.api(), "externalip", "node-a", 6, clock=clock)
    await lease.renew()
    assert server.lease is not None
    server.version += 1  # someone else wrote it meanwhile
    server.lease["metadata"]["resourceVersion"] = str(server.version)
    clock.t += 2
    with pytest.raises(ConflictError):
        await lease.renew()
    assert lease.lapsed() == 2  # not renewed
    await lease.renew()
    assert server.calls[-2:] == ["GET", "PUT"] and lease.lapsed() == 0
