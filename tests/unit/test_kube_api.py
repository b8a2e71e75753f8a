"""The API gateway against every kind of answer a proxy or a busy server gives.

Driven through its public verbs over httpx's MockTransport; waits go through
an injected sleep that records them, so nothing here waits for real except
the latency test, which proves a slow answer is simply an answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx2 as httpx
import pytest
from prometheus_client import REGISTRY

from externalip.kube.api import (
    CLAIMS,
    LEASES,
    SERVICES,
    Api,
    ConflictError,
    GoneError,
    NotFoundError,
    ServerError,
    TooManyRequestsError,
    UnreachableError,
)

Handler = Callable[[httpx.Request], Any]
CLAIM = {"apiVersion": "ipcontroller.ext/v1", "kind": "IpClaim",
         "metadata": {"name": "c1", "resourceVersion": "5"}, "spec": {"cidr": "192.0.2.1/32"}}
HTML_502 = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"


class Recorder:
    """The requests the server saw and the waits the gateway asked for."""

    def __init__(self, answers: list[Any]) -> None:
        self.answers = answers
        self.requests: list[httpx.Request] = []
        self.waits: list[float] = []

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        if callable(answer):
            result: httpx.Response = await answer(request)
            return result
        return answer

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)

    def api(self, retry_budget: float = 5.0) -> Api:
        http = httpx.AsyncClient(transport=httpx.MockTransport(self.handle),
                                 base_url="https://api.test")
        return Api(http, retry_budget=retry_budget, sleep=self.sleep)


def ok(body: dict[str, Any] | None = None) -> httpx.Response:
    return httpx.Response(200, json=body if body is not None else CLAIM)


def status(code: int, reason: str, message: str) -> httpx.Response:
    return httpx.Response(code, json={"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                      "reason": reason, "message": message, "code": code})


async def test_html_502_is_a_typed_error_with_a_readable_message() -> None:
    server = Recorder([httpx.Response(502, content=HTML_502,
                                      headers={"Content-Type": "text/html"})])
    api = server.api(retry_budget=1.0)
    with pytest.raises(ServerError) as caught:
        await api.get(CLAIMS, "c1")
    assert caught.value.code == 502
    assert "502 Bad Gateway" in caught.value.message
    assert len(server.requests) > 1  # a GET is idempotent: it was tried again


async def test_html_502_on_a_create_is_not_repeated() -> None:
    server = Recorder([httpx.Response(502, content=HTML_502)])
    with pytest.raises(ServerError):
        await server.api().create(CLAIMS, CLAIM)
    assert len(server.requests) == 1  # a POST may have landed: never sent twice


async def test_truncated_json_error_body_still_gives_its_code() -> None:
    server = Recorder([httpx.Response(500, content=b'{"kind":"Status","message":"etcd')])
    with pytest.raises(ServerError) as caught:
        await server.api(retry_budget=0).get(CLAIMS, "c1")
    assert caught.value.code == 500 and "etcd" in caught.value.message


async def test_truncated_json_in_a_success_is_a_server_error_then_retried() -> None:
    server = Recorder([httpx.Response(200, content=b'{"metadata": {"name": "c1"'), ok()])
    assert (await server.api().get(CLAIMS, "c1"))["metadata"]["name"] == "c1"
    assert len(server.requests) == 2


async def test_empty_error_body() -> None:
    server = Recorder([httpx.Response(500, content=b"")])
    with pytest.raises(ServerError) as caught:
        await server.api(retry_budget=0).get(CLAIMS, "c1")
    assert caught.value.message == "(empty body)"


async def test_500_is_retried_for_a_get_until_it_succeeds() -> None:
    server = Recorder([status(500, "InternalError", "boom"), status(500, "InternalError", "boom"),
                       ok()])
    assert await server.api().get(CLAIMS, "c1") == CLAIM
    assert len(server.requests) == 3 and len(server.waits) == 2


async def test_429_waits_as_long_as_retry_after_says_whatever_the_verb() -> None:
    busy = httpx.Response(429, headers={"Retry-After": "3"},
                          json={"kind": "Status", "reason": "TooManyRequests", "message": "slow"})
    server = Recorder([busy, ok()])
    assert await server.api().create(CLAIMS, CLAIM) == CLAIM
    assert server.waits == [3.0]
    assert [r.method for r in server.requests] == ["POST", "POST"]


async def test_429_past_the_retry_budget_is_raised_with_its_retry_after() -> None:
    server = Recorder([httpx.Response(429, headers={"Retry-After": "30"})])
    with pytest.raises(TooManyRequestsError) as caught:
        await server.api(retry_budget=5).get(CLAIMS, "c1")
    assert caught.value.retry_after == 30.0 and server.waits == []


async def test_connection_reset_is_retried_for_reads_only() -> None:
    reset = httpx.ReadError("Connection reset by peer")
    server = Recorder([reset, ok()])
    assert await server.api().get(CLAIMS, "c1") == CLAIM
    assert len(server.requests) == 2
    for write in ("replace", "merge_patch"):
        server = Recorder([reset, ok()])
        with pytest.raises(UnreachableError):
            if write == "replace":
                await server.api().replace(CLAIMS, "c1", CLAIM)
            else:
                await server.api().merge_patch(CLAIMS, "c1", {"status": {}},
                                               subresource="status")
        assert len(server.requests) == 1  # decided on a snapshot: the caller decides again


async def test_a_refused_connection_fails_a_write_at_once_and_a_read_waits() -> None:
    server = Recorder([httpx.ConnectError("Connection refused"), ok()])
    with pytest.raises(UnreachableError):
        await server.api().create(CLAIMS, CLAIM)
    assert len(server.requests) == 1
    server = Recorder([httpx.ConnectError("Connection refused"), ok()])
    assert await server.api().list(CLAIMS) == CLAIM
    assert len(server.requests) == 2


async def test_a_put_is_not_repeated_after_a_5xx() -> None:
    server = Recorder([status(503, "ServiceUnavailable", "etcd leader changed"), ok()])
    with pytest.raises(ServerError):
        await server.api().replace(CLAIMS, "c1", CLAIM)
    assert len(server.requests) == 1


async def test_two_seconds_of_latency_is_just_a_slow_answer() -> None:
    async def slow(_request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(2)
        return ok()
    server = Recorder([slow])
    assert await server.api().get(CLAIMS, "c1") == CLAIM
    assert len(server.requests) == 1


async def test_kubernetes_status_errors_are_typed() -> None:
    server = Recorder([status(404, "NotFound", 'ipclaims "c1" not found')])
    with pytest.raises(NotFoundError) as caught:
        await server.api().get(CLAIMS, "c1")
    assert caught.value.reason == "NotFound" and "c1" in caught.value.message
    server = Recorder([status(409, "Conflict", "the object has been modified")])
    with pytest.raises(ConflictError):
        await server.api().replace(CLAIMS, "c1", CLAIM)
    assert len(server.requests) == 1


async def test_requests_are_counted_by_verb_resource_and_code() -> None:
    def count(verb: str, code: str) -> float:
        return REGISTRY.get_sample_value("externalip_api_requests_total",
                                         {"verb": verb, "resource": "leases", "code": code}) or 0
    before = count("GET", "503"), count("GET", "200")
    server = Recorder([status(503, "ServiceUnavailable", "starting"), ok()])
    await server.api().get(LEASES, "n1", "externalip")
    assert count("GET", "503") == before[0] + 1 and count("GET", "200") == before[1] + 1
    assert REGISTRY.get_sample_value("externalip_api_request_duration_seconds_count",
                                     {"verb": "GET", "resource": "leases"})


async def test_writes_go_through_to_the_cache_but_never_over_a_newer_object() -> None:
    newer = {**CLAIM, "metadata": {"name": "c1", "resourceVersion": "9"}}
    cache: dict[str, dict[str, Any]] = {"c1": newer}
    server = Recorder([ok()])
    await server.api().replace(CLAIMS, "c1", CLAIM, cache=cache)
    assert cache["c1"] is newer  # the watch already delivered something later
    svc = {"metadata": {"name": "web", "namespace": "ns", "resourceVersion": "3"}}
    server = Recorder([ok(svc)])
    services: dict[str, dict[str, Any]] = {}
    await server.api().merge_patch(SERVICES, "web", {"status": {}}, "ns", subresource="status",
                                   cache=services)
    assert services == {"ns/web": svc}
    assert str(server.requests[0].url).endswith(
        "/api/v1/namespaces/ns/services/web/status?fieldManager=externalip")
    await Recorder([ok({})]).api().delete(SERVICES, "web", "ns", cache=services)
    assert services == {}


async def _events(api: Api) -> list[dict[str, Any]]:
    return [e async for e in api.watch(CLAIMS, None, {"watch": "true"}, read_timeout=5)]


async def test_watch_reports_gone_from_an_error_event_and_from_a_410() -> None:
    added = b'{"type":"ADDED","object":{"metadata":{"name":"a","resourceVersion":"2"}}}\n'
    expired = b'{"type":"ERROR","object":{"kind":"Status","code":410,"reason":"Expired"}}\n'
    server = Recorder([httpx.Response(200, content=added + expired)])
    seen: list[dict[str, Any]] = []
    with pytest.raises(GoneError):
        async for event in server.api().watch(CLAIMS, None, {}, read_timeout=5):
            seen.append(event)
    assert [e["type"] for e in seen] == ["ADDED"]
    with pytest.raises(GoneError):
        await _events(Recorder([status(410, "Expired", "too old")]).api())


async def test_watch_survives_nothing_it_cannot_read_but_says_why() -> None:
    with pytest.raises(ServerError) as caught:
        await _events(Recorder([httpx.Response(502, content=HTML_502)]).api())
    assert caught.value.code == 502
    with pytest.raises(ServerError):
        await _events(Recorder([httpx.Response(200, content=b'{"type":"ADDED","obj')]).api())
    with pytest.raises(UnreachableError):
        await _events(Recorder([httpx.ReadError("reset")]).api())
