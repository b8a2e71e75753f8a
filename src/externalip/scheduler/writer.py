"""Carries a plan out against the API server, and keeps the caches in step.

Every successful write is put into the informer's store at once (the
informer will deliver the same object a moment later), so the next pass
does not plan the same write again. Claim creation is the reservation: a
409 AlreadyExists means another scheduler reserved that address first, and
the next pass, seeing its claim, allocates around it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx2 as httpx

from externalip import log
from externalip.core.desired import Plan
from externalip.core.model import Claim
from externalip.kube.paths import collection_path
from externalip.kube.resources import IpClaimPoolResource, IpClaimResource
from externalip.scheduler.metrics import FAILOVERS, WRITES

_log = log.get(__name__)

CLAIMS = collection_path(IpClaimResource)
POOLS = collection_path(IpClaimPoolResource)
MERGE = {"Content-Type": "application/merge-patch+json"}


def _version(obj: dict[str, Any] | None) -> int:
    try:
        return int((obj or {}).get("metadata", {}).get("resourceVersion", 0))
    except ValueError:
        return 0


def remember(store: dict[str, dict[str, Any]], key: str, obj: dict[str, Any]) -> None:
    """Put a write's response in the cache unless the informer already holds newer.

    The informer may deliver the change (and later ones, such as an agent's
    status update) before our own response is processed; overwriting would
    leave a stale resourceVersion that makes every later precondition fail.
    resourceVersions are opaque in principle; kube-apiserver on etcd issues
    increasing integers, and anything else simply falls back to overwriting.
    """
    current = store.get(key)
    if current is not None and _version(current) > _version(obj):
        return
    store[key] = obj


class Writer:
    def __init__(self, http: httpx.AsyncClient, claims: dict[str, dict[str, Any]],
                 services: dict[str, dict[str, Any]], may_write: Callable[[], bool],
                 concurrency: int = 16) -> None:
        self._http = http
        self._claims = claims
        self._services = services
        self._may_write = may_write
        self._limit = asyncio.Semaphore(concurrency)

    async def apply(self, plan: Plan) -> int:
        """Run every write of the plan; returns how many failed (to retry later)."""
        jobs: list[Awaitable[bool]] = [self._create(c) for c in plan.create]
        jobs += [self._update(c) for c in plan.update]
        jobs += [self._delete(n) for n in plan.delete]
        jobs += [self._ingress(k, ips) for k, ips in plan.ingress.items()]
        jobs += [self._external_ips(k, ips) for k, ips in plan.external_ips.items()]
        results = await asyncio.gather(*jobs)
        return sum(1 for ok in results if not ok)

    async def _send(self, kind: str, method: str, path: str, body: Any = None, *,
                    headers: dict[str, str] | None = None,
                    accept: tuple[int, ...] = ()) -> httpx.Response | None:
        if not self._may_write():
            return None  # lost the lease: stop writing at once
        async with self._limit:
            try:
                resp = await self._http.request(method, path, json=body, headers=headers)
            except (httpx.HTTPError, OSError) as exc:
                WRITES.labels(kind, "error").inc()
                _log.warning("write failed", kind=kind, path=path, error=str(exc))
                return None
        if resp.is_success or resp.status_code in accept:
            WRITES.labels(kind, "ok" if resp.is_success else str(resp.status_code)).inc()
            return resp
        WRITES.labels(kind, str(resp.status_code)).inc()
        _log.warning("write refused", kind=kind, path=path, status=resp.status_code,
                     message=resp.json().get("message", "") if resp.content else "")
        return None

    async def _create(self, claim: Claim) -> bool:
        resp = await self._send("claim-create", "POST", CLAIMS, claim.to_object(),
                                accept=(409,))
        if resp is None:
            return False
        if resp.status_code == 409:
            _log.info("address reserved by another scheduler", claim=claim.name)
            return True
        remember(self._claims, claim.name, resp.json())
        _log.info("claim created", claim=claim.name, node=claim.spec.node_name,
                  services=list(claim.spec.services))
        return True

    async def _update(self, claim: Claim) -> bool:
        old = self._claims.get(claim.name)
        body = claim.to_object()
        body["metadata"]["resourceVersion"] = claim.resource_version
        resp = await self._send("claim-update", "PUT", f"{CLAIMS}/{claim.name}", body,
                                accept=(409,))
        if resp is None:
            return False
        if resp.status_code == 409:
            await self._refresh(claim.name)
            return False
        remember(self._claims, claim.name, resp.json())
        before = (old or {}).get("spec", {}).get("nodeName", "")
        if before and before != claim.spec.node_name:
            FAILOVERS.inc()
            _log.info("claim moved", claim=claim.name, node=claim.spec.node_name, was=before)
        return True

    async def _delete(self, name: str) -> bool:
        version = (self._claims.get(name) or {}).get("metadata", {}).get("resourceVersion")
        body = {"preconditions": {"resourceVersion": version}} if version else None
        resp = await self._send("claim-delete", "DELETE", f"{CLAIMS}/{name}", body,
                                accept=(404, 409))
        if resp is None:
            return False
        if resp.status_code == 409:  # changed since we looked: decide again on fresh data
            await self._refresh(name)
            return False
        self._claims.pop(name, None)
        _log.info("claim deleted", claim=name)
        return True

    async def _ingress(self, key: str, ips: tuple[str, ...]) -> bool:
        ns, name = key.split("/", 1)
        body = {"status": {"loadBalancer": {"ingress": [{"ip": ip, "ipMode": "VIP"}
                                                        for ip in ips]}}}
        resp = await self._send("service-status", "PATCH",
                                f"/api/v1/namespaces/{ns}/services/{name}/status", body,
                                headers=MERGE)
        if resp is None:
            return False
        remember(self._services, key, resp.json())
        return True

    async def _refresh(self, name: str) -> None:
        try:
            resp = await self._http.get(f"{CLAIMS}/{name}")
        except (httpx.HTTPError, OSError):
            return
        if resp.status_code == 200:
            remember(self._claims, name, resp.json())
        elif resp.status_code == 404:
            self._claims.pop(name, None)

    async def patch_pool_status(self, name: str, status: dict[str, Any]) -> dict[str, Any] | None:
        resp = await self._send("pool-status", "PATCH",
                                f"{POOLS}/{name}/status", {"status": status}, headers=MERGE)
        return resp.json() if resp is not None else None

    async def _external_ips(self, key: str, ips: tuple[str, ...]) -> bool:
        ns, name = key.split("/", 1)
        version = (self._services.get(key) or {}).get("metadata", {}).get("resourceVersion")
        body = {"metadata": {"resourceVersion": version}, "spec": {"externalIPs": list(ips)}}
        resp = await self._send("service-spec", "PATCH",
                                f"/api/v1/namespaces/{ns}/services/{name}", body, headers=MERGE)
        if resp is None:
            return False
        remember(self._services, key, resp.json())
        return True
