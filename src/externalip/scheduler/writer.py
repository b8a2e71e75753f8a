"""Carries a plan out against the API server, and keeps the caches in step.

Every successful write is put into the informer's store at once by the
gateway (the informer will deliver the same object a moment later), so the
next pass does not plan the same write again. Claim creation is the
reservation: a 409 AlreadyExists means another scheduler reserved that
address first, and the next pass, seeing its claim, allocates around it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from externalip import log
from externalip.core.conditions import Condition, merge
from externalip.core.desired import Plan
from externalip.core.model import Claim
from externalip.kube.api import (
    CLAIMS,
    IPNODES,
    POOLS,
    SERVICES,
    Api,
    ApiError,
    Cache,
    ConflictError,
    NotFoundError,
    remember,
)
from externalip.kube.times import now_rfc3339
from externalip.scheduler.metrics import FAILOVERS, WRITES

_log = log.get(__name__)


class Writer:
    def __init__(self, api: Api, *, claims: Cache, services: Cache, pools: Cache,
                 may_write: Callable[[], bool], concurrency: int = 16,
                 allocated: Callable[[str, tuple[str, ...]], None] = lambda _k, _ips: None
                 ) -> None:
        self._allocated = allocated  # the allocation-latency clock (scheduler.metrics)
        self._api = api
        self._claims = claims
        self._services = services
        self._pools = pools
        self._may_write = may_write
        self._concurrency = concurrency
        self._limit = asyncio.Semaphore(concurrency)

    async def apply(self, plan: Plan) -> int:
        """Run every write of the plan; returns how many failed (to retry later).

        `concurrency` workers take the writes in turn: a coroutine per write
        created up front (20,000 for 10,000 new Services) was the scheduler's
        memory peak, and Python keeps the peak as its RSS.
        """
        jobs: list[Callable[[], Awaitable[bool]]] = [
            *(partial(self._create, c) for c in plan.create),
            *(partial(self._update, c) for c in plan.update),
            *(partial(self._delete, n) for n in plan.delete),
            *(partial(self._ingress, k, ips, plan.conditions.get(k))
              for k, ips in plan.ingress.items()),
            *(partial(self._external_ips, k, ips) for k, ips in plan.external_ips.items())]
        queue = iter(jobs)
        failed = 0

        async def worker() -> None:
            nonlocal failed
            for job in queue:
                if not await job():
                    failed += 1
        await asyncio.gather(*(worker() for _ in range(min(self._concurrency, len(jobs)))))
        return failed

    async def _send(self, kind: str, subject: str, write: Callable[[], Awaitable[Any]],
                    *, accept: tuple[type[ApiError], ...] = ()) -> bool | ApiError:
        """True: written; an error of `accept`: refused, the caller decides; False: failed."""
        if not self._may_write():
            return False  # lost the lease: stop writing at once
        async with self._limit:
            try:
                await write()
            except accept as exc:
                WRITES.labels(kind, str(exc.code)).inc()
                return exc
            except ApiError as exc:
                WRITES.labels(kind, str(exc.code or "error")).inc()
                _log.warning("write refused" if exc.code else "write failed",
                             kind=kind, object=subject, error=str(exc))
                return False
        WRITES.labels(kind, "ok").inc()
        return True

    async def _create(self, claim: Claim) -> bool:
        done = await self._send("claim-create", claim.name, lambda: self._api.create(
            CLAIMS, claim.to_object(), cache=self._claims), accept=(ConflictError,))
        if done is False:
            return False
        if isinstance(done, ConflictError):
            _log.info("address reserved by another scheduler", claim=claim.name)
            return True
        _log.info("claim created", claim=claim.name, node=claim.spec.node_name,
                  services=list(claim.spec.services))
        return True

    async def _update(self, claim: Claim) -> bool:
        old = self._claims.get(claim.name)
        body = claim.to_object()
        body["metadata"]["resourceVersion"] = claim.resource_version
        done = await self._send("claim-update", claim.name, lambda: self._api.replace(
            CLAIMS, claim.name, body, cache=self._claims), accept=(ConflictError,))
        if done is not True:
            if isinstance(done, ConflictError):
                await self._refresh(claim.name)
            return False
        before = (old or {}).get("spec", {}).get("nodeName", "")
        if before and before != claim.spec.node_name and claim.spec.handover_from == before:
            _log.info("claim handed over from a draining node", claim=claim.name,
                      node=claim.spec.node_name, was=before)  # maintenance: no failover
        elif before and before != claim.spec.node_name:
            FAILOVERS.inc()
            _log.info("claim moved", claim=claim.name, node=claim.spec.node_name, was=before)
        return True

    async def _delete(self, name: str) -> bool:
        version = (self._claims.get(name) or {}).get("metadata", {}).get("resourceVersion")
        done = await self._send("claim-delete", name, lambda: self._api.delete(
            CLAIMS, name, resource_version=version, cache=self._claims),
            accept=(NotFoundError, ConflictError))
        if done is False:
            return False
        if isinstance(done, ConflictError):  # changed since we looked: decide again on fresh data
            await self._refresh(name)
            return False
        self._claims.pop(name, None)
        _log.info("claim deleted", claim=name)
        return True

    async def _ingress(self, key: str, ips: tuple[str, ...],
                       condition: Condition | None = None) -> bool:
        ns, name = key.split("/", 1)
        status: dict[str, Any] = {"loadBalancer": {"ingress": [{"ip": ip, "ipMode": "VIP"}
                                                               for ip in ips]}}
        if condition is not None:  # one patch, one request: the list carries others' too
            current = ((self._services.get(key) or {}).get("status") or {}).get("conditions")
            status["conditions"] = merge(current, (condition,), now_rfc3339())
        body = {"status": status}
        done = await self._send("service-status", key, lambda: self._api.merge_patch(
            SERVICES, name, body, ns, subresource="status", cache=self._services))
        if done is True:
            self._allocated(key, ips)
        return done is True

    async def _external_ips(self, key: str, ips: tuple[str, ...]) -> bool:
        ns, name = key.split("/", 1)
        version = (self._services.get(key) or {}).get("metadata", {}).get("resourceVersion")
        body = {"metadata": {"resourceVersion": version}, "spec": {"externalIPs": list(ips)}}
        done = await self._send("service-spec", key, lambda: self._api.merge_patch(
            SERVICES, name, body, ns, cache=self._services))
        return done is True

    async def patch_claim_condition(self, name: str, condition: Condition) -> bool:
        current = ((self._claims.get(name) or {}).get("status") or {}).get("conditions")
        body = {"status": {"conditions": merge(current, (condition,), now_rfc3339())}}
        done = await self._send("claim-status", name, lambda: self._api.merge_patch(
            CLAIMS, name, body, subresource="status", cache=self._claims))
        return done is True

    async def _refresh(self, name: str) -> None:
        try:
            fresh = await self._api.get(CLAIMS, name)
        except NotFoundError:
            self._claims.pop(name, None)
        except (ApiError, OSError):
            return
        else:
            remember(self._claims, name, fresh)

    async def patch_pool_status(self, name: str, status: dict[str, Any]) -> bool:
        done = await self._send("pool-status", name, lambda: self._api.merge_patch(
            POOLS, name, {"status": status}, subresource="status", cache=self._pools))
        return done is True

    async def patch_ipnode_status(self, name: str, status: dict[str, Any]) -> bool:
        done = await self._send("ipnode-status", name, lambda: self._api.merge_patch(
            IPNODES, name, {"status": status}, subresource="status"))
        return done is True

    async def patch_ipnode_draining(self, name: str, draining: bool) -> bool:
        """Mirror a Node's drain label on its IpNode (kubectl get ipnodes shows it)."""
        done = await self._send("ipnode-draining", name, lambda: self._api.merge_patch(
            IPNODES, name, {"spec": {"draining": draining or None}}), accept=(NotFoundError,))
        return done is True
