"""Events and the health/metrics endpoint, against real servers."""

from __future__ import annotations

import asyncio
import json

import pytest

from externalip.health import serve
from externalip.kube.api import Api
from externalip.kube.events import WARNING, EventRecorder, ObjectRef
from externalip_lab.controlplane import ControlPlane

pytestmark = pytest.mark.integration


async def test_repeated_events_fold_into_one_with_a_count(control_plane: ControlPlane,
                                                          api: Api,
                                                          unique: str) -> None:
    control_plane.ensure_namespace(unique)
    ref = ObjectRef("v1", "Service", "web", unique, "uid-1")
    recorder = EventRecorder(api, "externalip-test", "host-a")
    for _ in range(3):
        await recorder.emit(ref, WARNING, "PoolExhausted", "no free address in pool p")
    events = json.loads(control_plane.kubectl("get", "events", "-n", unique, "-o",
                                              "json").stdout)["items"]
    assert len(events) == 1
    assert events[0]["count"] == 3
    assert events[0]["involvedObject"]["name"] == "web"
    assert events[0]["reason"] == "PoolExhausted"


async def _get(port: int, path: str) -> tuple[str, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.0\r\n\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return head.decode().splitlines()[0], body


async def test_health_ready_and_metrics_endpoints() -> None:
    ready = False
    (server,) = await serve("127.0.0.1:0", lambda: ready)
    port = server.sockets[0].getsockname()[1]
    try:
        assert (await _get(port, "/healthz"))[0].endswith("200 OK")
        assert " 503 " in (await _get(port, "/readyz"))[0]
        ready = True
        assert (await _get(port, "/readyz"))[0].endswith("200 OK")
        status, body = await _get(port, "/metrics")
        assert status.endswith("200 OK") and b"python_info" in body
        assert " 404 " in (await _get(port, "/nope"))[0]
    finally:
        server.close()
    assert await serve("", lambda: True) == []  # disabled
