"""The one gateway to the API server: every request of every program goes here.

It owns the HTTP client (built from lightkube's public config API), turns
every failure into a typed error once (errors.py), retries what is safe to
retry, counts and times every request by verb, resource and code, and puts
the result of every write into the informer cache the caller names, so the
next pass does not plan the same write again.

Retries: a 429 (or a 503 with Retry-After) waits as long as the server asks,
whatever the verb: the server says it did nothing. Otherwise only reads are
repeated (a 5xx, a broken body, a reset or refused connection): a write is
decided on a snapshot of the caches, and repeating it later, after the API
came back, would apply a decision the fresh data may no longer support (a
claim moved off a node that was only unreachable). A failed write goes back
to the caller, whose next pass decides again on fresh data. Waiting stops
when `retry_budget` seconds are spent.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping
from pathlib import Path
from typing import Any

import httpx2 as httpx
import msgspec
from lightkube import KubeConfig
from lightkube.config import client_adapter
from prometheus_client import Counter, Histogram

from externalip.kube.api.errors import (
    ApiError,
    GoneError,
    ServerError,
    TooManyRequestsError,
    UnreachableError,
    from_response,
)
from externalip.kube.api.kinds import Kind

FIELD_MANAGER = "externalip"
MERGE_PATCH = {"Content-Type": "application/merge-patch+json"}

REQUESTS = Counter("externalip_api_requests_total",
                   "Requests to the API server, by verb, resource and HTTP code (0: no answer)",
                   ["verb", "resource", "code"])
LATENCY = Histogram("externalip_api_request_duration_seconds",
                    "Time to an answer from the API server, by verb and resource",
                    ["verb", "resource"])

Object = dict[str, Any]
Cache = MutableMapping[str, Object]


def load_config(kubeconfig: str) -> KubeConfig:
    """The kubeconfig named, else in-cluster service-account config, else ~/.kube/config."""
    if kubeconfig:
        return KubeConfig.from_file(Path(kubeconfig))
    return KubeConfig.from_env()


def _version(obj: Mapping[str, Any] | None) -> int:
    try:
        return int((obj or {}).get("metadata", {}).get("resourceVersion", 0))
    except (TypeError, ValueError):
        return 0


def remember(cache: Cache, key: str, obj: Object) -> None:
    """Put a write's response in the cache unless the informer already holds newer.

    The informer may deliver the change (and later ones, such as an agent's
    status update) before our own response is processed; overwriting would
    leave a stale resourceVersion that makes every later precondition fail.
    resourceVersions are opaque in principle; kube-apiserver on etcd issues
    increasing integers, and anything else simply falls back to overwriting.
    """
    current = cache.get(key)
    if current is not None and _version(current) > _version(obj):
        return
    cache[key] = obj


def _cache_key(name: str, namespace: str | None) -> str:
    return f"{namespace}/{name}" if namespace else name


class Api:
    """Typed verbs over one HTTP client. Bodies and answers are the API's JSON."""

    def __init__(self, http: httpx.AsyncClient, *, retry_budget: float = 5.0,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self._http = http
        self._retry_budget = retry_budget
        self._sleep = sleep

    @classmethod
    def connect(cls, kubeconfig: str, *, timeout: float = 10.0, **kwargs: Any) -> Api:
        config = load_config(kubeconfig).get()
        if config is None:
            raise ApiError(0, "NoConfig", f"no usable context in {kubeconfig or 'environment'}")
        params = client_adapter.ConnectionParams(timeout=httpx.Timeout(timeout))
        return cls(client_adapter.AsyncClient(config, params), **kwargs)

    async def close(self) -> None:
        await self._http.aclose()

    # --- verbs ------------------------------------------------------------------
    async def get(self, kind: Kind, name: str, namespace: str | None = None) -> Object:
        return await self.request("GET", kind, kind.item(name, namespace))

    async def list(self, kind: Kind, namespace: str | None = None,
                   params: Mapping[str, Any] | None = None) -> Object:
        """One page of a list (callers pass `limit`/`continue` to page)."""
        return await self.request("GET", kind, kind.collection(namespace), params=params)

    async def create(self, kind: Kind, body: Object, namespace: str | None = None, *,
                     cache: Cache | None = None) -> Object:
        obj = await self.request("POST", kind, kind.collection(namespace), body=body)
        if cache is not None:
            remember(cache, _cache_key(obj["metadata"]["name"], namespace), obj)
        return obj

    async def replace(self, kind: Kind, name: str, body: Object, namespace: str | None = None,
                      *, cache: Cache | None = None) -> Object:
        """PUT: the body's resourceVersion is the precondition (ConflictError if stale)."""
        obj = await self.request("PUT", kind, kind.item(name, namespace), body=body)
        if cache is not None:
            remember(cache, _cache_key(name, namespace), obj)
        return obj

    async def merge_patch(self, kind: Kind, name: str, body: Object,
                          namespace: str | None = None, *, subresource: str = "",
                          cache: Cache | None = None) -> Object:
        obj = await self.request("PATCH", kind, kind.item(name, namespace, subresource),
                                 body=body, headers=MERGE_PATCH)
        if cache is not None:
            remember(cache, _cache_key(name, namespace), obj)
        return obj

    async def delete(self, kind: Kind, name: str, namespace: str | None = None, *,
                     resource_version: str | None = None, cache: Cache | None = None) -> None:
        """Delete, only if still at `resource_version` when given (ConflictError otherwise)."""
        body = {"preconditions": {"resourceVersion": resource_version}} \
            if resource_version else None
        await self.request("DELETE", kind, kind.item(name, namespace), body=body)
        if cache is not None:
            cache.pop(_cache_key(name, namespace), None)

    async def watch(self, kind: Kind, namespace: str | None, params: Mapping[str, Any], *,
                    read_timeout: float,
                    on_open: Callable[[], None] = lambda: None) -> AsyncIterator[Object]:
        """The events of a watch, decoded, until the server ends it.

        Raises GoneError when the version asked for has been compacted away (as an
        HTTP 410 or as an ERROR event), and the other typed errors otherwise.
        """
        path = kind.collection(namespace)
        started = time.monotonic()
        timeout = httpx.Timeout(10.0, read=read_timeout)
        try:
            async with self._http.stream("GET", path, params=dict(params),
                                         timeout=timeout) as resp:
                self._observe("WATCH", kind, resp.status_code, started)
                if not resp.is_success:
                    raise from_response(resp.status_code, await resp.aread(),
                                        resp.headers.get("Retry-After"))
                on_open()
                async for line in resp.aiter_lines():
                    if line:
                        yield _watch_event(line)
        except httpx.HTTPError as exc:
            raise UnreachableError(0, type(exc).__name__, str(exc) or repr(exc)) from exc

    # --- one request, with retries ------------------------------------------------
    async def request(self, verb: str, kind: Kind, path: str, *, body: Any = None,
                      params: Mapping[str, Any] | None = None,
                      headers: Mapping[str, str] | None = None) -> Object:
        """Send, retry what is safe to retry, and return the decoded answer."""
        query = dict(params or {})
        if verb in ("POST", "PUT", "PATCH"):
            query.setdefault("fieldManager", FIELD_MANAGER)
        waited = 0.0
        attempt = 0
        while True:
            try:
                return await self._once(verb, kind, path, body, params=query, headers=headers)
            except ApiError as exc:
                delay = _retry_delay(exc, verb, attempt)
                if delay is None or waited + delay > self._retry_budget:
                    raise
            attempt += 1
            waited += delay
            await self._sleep(delay)

    async def _once(self, verb: str, kind: Kind, path: str, body: Any, *,
                    params: Mapping[str, Any], headers: Mapping[str, str] | None) -> Object:
        started = time.monotonic()
        content = msgspec.json.encode(body) if body is not None else None
        sent = {"Content-Type": "application/json", **(headers or {})} if content else headers
        try:
            resp = await self._http.request(verb, path, content=content, params=params,
                                            headers=sent)
        except httpx.HTTPError as exc:
            self._observe(verb, kind, 0, started)
            raise UnreachableError(0, type(exc).__name__, str(exc) or repr(exc)) from exc
        self._observe(verb, kind, resp.status_code, started)
        if not resp.is_success:
            raise from_response(resp.status_code, resp.content, resp.headers.get("Retry-After"))
        try:
            answer = msgspec.json.decode(resp.content) if resp.content else {}
        except msgspec.DecodeError as exc:
            raise ServerError(resp.status_code, "BadResponse",
                              f"the answer is not JSON: {exc}") from exc
        if not isinstance(answer, dict):
            raise ServerError(resp.status_code, "BadResponse", "the answer is not an object")
        return answer

    @staticmethod
    def _observe(verb: str, kind: Kind, code: int, started: float) -> None:
        REQUESTS.labels(verb, kind.plural, str(code)).inc()
        LATENCY.labels(verb, kind.plural).observe(time.monotonic() - started)


def _watch_event(line: str) -> Object:
    try:
        event = msgspec.json.decode(line)
    except msgspec.DecodeError as exc:
        raise ServerError(200, "BadResponse", f"a watch event is not JSON: {exc}") from exc
    if not isinstance(event, dict) or "type" not in event or "object" not in event:
        raise ServerError(200, "BadResponse", "a watch event without type or object")
    if event["type"] == "ERROR":
        status = event["object"] or {}
        if status.get("code") == 410:
            raise GoneError(410, str(status.get("reason") or "Expired"), str(status.get("message")))
        raise ServerError(int(status.get("code") or 500), str(status.get("reason") or "Error"),
                          str(status.get("message") or "watch error"))
    return event


def _retry_delay(exc: ApiError, verb: str, attempt: int) -> float | None:
    """Seconds to wait before sending again, or None to give up now."""
    if isinstance(exc, TooManyRequestsError):
        return exc.retry_after if exc.retry_after is not None else 1.0
    if verb != "GET":
        return None
    if isinstance(exc, ServerError) and exc.retry_after is not None:
        return exc.retry_after
    if isinstance(exc, ServerError | UnreachableError):
        return 0.2 * 2.0 ** min(attempt, 5) * random.uniform(0.5, 1.0)
    return None
