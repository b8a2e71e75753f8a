"""The claims-mode agent's controller: claims in, addresses and statuses out.

It reconciles the addresses of the IpClaims assigned to this node (through
net.holder), reports what it holds (claim statuses, the IpNode inventory,
Events) and renews the node's Lease. The decisions it applies are pure
functions in externalip.core (holding, claims, fence); the program file
(programs/agent.py) only composes this with the adapters.

Lifecycle (docs/agent.md has the reasoning):
- start: adopt. Until the claim list is synced, every address carrying our
  mark is left exactly as it is (not removed, not re-added, not renewed); the
  first reconcile right after the list arrives renews what is still ours and
  removes what moved away while the agent was down.
- run: reconcile on claim events, on netlink events (an address removed by
  hand, a link change) and at least every addr-lifetime/3 (which refreshes
  the lifetimes).
- API unreachable: keep holding what the last known claims say (the informer
  keeps its cache and retries); lifetimes keep being refreshed.
- SIGTERM: stop refreshing and leave; addresses and Lease stay, so an agent
  back within the lifetime adopts them without a gap, and a removed agent's
  addresses expire on their own.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import time
from datetime import UTC, datetime
from typing import Any

import httpx2 as httpx
from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.models.coordination_v1 import LeaseSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.coordination_v1 import Lease
from lightkube.types import PatchType

from externalip import API_GROUP, API_VERSION, __version__, log
from externalip.core.addresses import IPAddress, IPInterface
from externalip.core.claims import node_status, status_writes, wants_from_claims
from externalip.core.fence import Fence
from externalip.core.holding import Want
from externalip.core.model import (
    MESSAGE_MAX,
    NODE_LABEL,
    Claim,
    ClaimStatus,
    NodeStatus,
    node_label,
)
from externalip.kube.events import WARNING, EventRecorder, ObjectRef
from externalip.kube.informer import Informer
from externalip.kube.resources import IpClaimResource, IpNodeResource
from externalip.kube.times import now_rfc3339
from externalip.net.holder import RECONCILE_ERRORS, AddressHolder

_log = log.get(__name__)
STATUS_WRITES_IN_FLIGHT = 8


def _status_patch(status: ClaimStatus) -> dict[str, Any]:
    # A merge patch: empty fields are sent as null so an old value goes away.
    return {
        "status": {
            "ready": status.ready,
            "holder": status.holder or None,
            "since": status.since or None,
            "message": status.message[:MESSAGE_MAX] or None,
        }
    }


class Agent:
    def __init__(self, opts: argparse.Namespace, client: AsyncClient, holder: AddressHolder):
        self.opts = opts
        self.node: str = opts.hostname
        self.client = client
        self.holder = holder
        self.claims = Informer(client, IpClaimResource, labels={NODE_LABEL: node_label(self.node)})
        self.events = EventRecorder(client, "externalip-agent", self.node)
        self.kick = asyncio.Event()
        self.report_kick = asyncio.Event()
        self.kick.set()  # the first pass runs as soon as the claims are listed
        self._report: tuple[list[Claim], tuple[Want, ...], dict[str, str]] | None = None
        self.claims.add_handler(self._on_claim)
        self._specs: dict[str, Any] = {}
        self.reconciled = False
        self._written: dict[str, tuple[str, ClaimStatus]] = {}
        self._problems: dict[str, str] = {}
        self._node_status: NodeStatus | None = None
        self._own: tuple[IPInterface, ...] = ()  # the node's own addresses, for the IpNode
        self._ipnode_exists = False
        self._lease: Lease | None = None
        # Monotonic time of the last successful Lease write; startup counts
        # as one so a slow first contact does not release anything.
        self.last_renewed = time.monotonic()
        self.fenced = False
        self.fence = Fence()

    def _on_claim(self, event: str, obj: dict[str, Any]) -> None:
        """Kick a reconcile, except for status-only changes (our own writes, mostly):
        with 1,000 claims, each status write would otherwise cost a full pass."""
        name = obj["metadata"]["name"]
        spec = obj.get("spec")
        if event == "DELETED":
            self._specs.pop(name, None)
        elif event == "MODIFIED" and self._specs.get(name) == spec:
            return
        else:
            self._specs[name] = spec
        self.kick.set()

    # --- reconcile -----------------------------------------------------------
    async def reconcile(self) -> None:
        if not self.claims.synced:
            # Until the claims are listed, leave our addresses exactly as they
            # are; then go on at once: what moved away while we were down must
            # leave now, not at the next periodic pass.
            await self.holder.adopt()
            await self.claims.wait_synced()
        claims: list[Claim] = []
        for obj in list(self.claims.store.values()):
            try:
                claims.append(Claim.from_object(obj))
            except (KeyError, TypeError, ValueError) as exc:
                _log.error("unreadable claim", claim=obj.get("metadata", {}).get("name"),
                           error=repr(exc))
        wants, invalid = wants_from_claims(claims, self.node, self.opts.iface)
        wants = self.fence.filter(wants, self.renewing())
        if self._must_release():
            wants = []
        result = await self.holder.reconcile(wants)
        self._own = result.plan.own
        # The API writes run in their own loop: the next address change must
        # not wait behind status writes of the previous one.
        self._report = (claims, result.held, {**invalid, **result.problems})
        self.report_kick.set()
        self.reconciled = True

    async def report(self) -> None:
        """Write what the last reconcile found: Events, claim statuses, IpNode."""
        if self._report is None:
            return
        claims, held_wants, problems = self._report
        await self._report_problems(problems)
        held = {owner for want in held_wants for owner in want.owners}
        await self._write_statuses(claims, held, problems)
        await self._write_node_status(held_wants)

    def renewing(self) -> bool:
        """Our Lease renewals are going through (at most one renewal missed)."""
        return bool(time.monotonic() - self.last_renewed <= float(self.opts.hb) * 1.5 + 0.5)

    def heard(self, ip: IPAddress, mac: bytes, ifindex: int) -> None:
        """Another MAC announced ip (net.conflict); see agent.fence for the policy."""
        if self.fence.heard(ip, self.holder.held, self.renewing()):
            _log.warning("another node announced our address while we are cut off from "
                         "the API; yielding it", node=self.node, address=str(ip),
                         mac=mac.hex(":"))
            self.kick.set()
        elif any(w.interface.ip == ip for w in self.holder.held) and self.renewing():
            _log.warning("another host announces an address assigned to this node",
                         node=self.node, address=str(ip), mac=mac.hex(":"))

    async def first_sync(self) -> None:
        """Reconcile as soon as the claim list is known, even if it is empty:
        a restarted agent must let go of addresses that moved while it was away."""
        await self.claims.wait_synced()
        self.kick.set()
        await asyncio.Event().wait()  # a job of until_signal: returning would stop the agent

    def lease_valid(self) -> bool:
        lapsed: float = time.monotonic() - self.last_renewed
        return lapsed <= float(self.opts.lease_duration)

    def _must_release(self) -> bool:
        """--api-loss=release: past the Lease duration without renewal, the
        scheduler may already have given our IPs to another node; let go."""
        fenced: bool = not self.lease_valid() and self.opts.api_loss == "release"
        if fenced != self.fenced:
            _log.warning("lease expired, releasing addresses" if fenced else
                         "lease renewed, holding addresses again", node=self.node)
            self.fenced = fenced
        return fenced

    async def _report_problems(self, problems: dict[str, str]) -> None:
        for name, why in problems.items():
            if self._problems.get(name) == why:
                continue  # already reported; the status carries it meanwhile
            _log.warning("claim refused", claim=name, reason=why)
            obj = self.claims.store.get(name, {})
            ref = ObjectRef(f"{API_GROUP}/{API_VERSION}", "IpClaim", name,
                            uid=obj.get("metadata", {}).get("uid", ""))
            await self.events.emit(ref, WARNING, "AddressRefused", why[:MESSAGE_MAX])
        self._problems = problems

    async def _write_statuses(
        self, claims: list[Claim], held: set[str], problems: dict[str, str]
    ) -> None:
        writes = status_writes(claims, self.node, held=held, problems=problems, now=now_rfc3339(),
                               written=self._written)
        by_name = {c.name: c for c in claims}
        # A few writes in flight: after a failover 1,000 statuses are due, and
        # one at a time they would take a round trip each.
        slots = asyncio.Semaphore(STATUS_WRITES_IN_FLIGHT)

        async def write(name: str, status: ClaimStatus) -> None:
            async with slots:
                try:
                    await self.client.patch(IpClaimResource.Status, name, _status_patch(status),
                                            patch_type=PatchType.MERGE)
                except ApiError as exc:
                    if exc.status.code == 404:
                        return  # deleted meanwhile
                    RECONCILE_ERRORS.labels("status").inc()
                    _log.error("cannot write claim status", claim=name, error=str(exc))
                    return
                except (httpx.HTTPError, OSError) as exc:  # unreachable; retried next run
                    RECONCILE_ERRORS.labels("status").inc()
                    _log.warning("cannot write claim status", claim=name, error=str(exc))
                    return
            self._written[name] = (by_name[name].resource_version, status)
            _log.info("claim status written", claim=name, ready=status.ready)

        await asyncio.gather(*(write(name, status) for name, status in writes.items()))
        for name in set(self._written) - set(by_name):
            del self._written[name]

    async def _write_node_status(self, held: tuple[Want, ...]) -> None:
        status = node_status(self.opts.iface, held, __version__, self._own)
        if status == self._node_status:
            return
        try:
            await self._ensure_ipnode()
            await self.client.patch(IpNodeResource.Status, self.node,
                                    {"status": status.to_dict()}, patch_type=PatchType.MERGE)
        except (ApiError, httpx.HTTPError, OSError) as exc:
            if isinstance(exc, ApiError) and exc.status.code == 404:
                self._ipnode_exists = False  # deleted by someone: create it again next time
            RECONCILE_ERRORS.labels("ipnode").inc()
            _log.warning("cannot write IpNode status", node=self.node, error=str(exc))
            return
        self._node_status = status

    async def _ensure_ipnode(self) -> None:
        if self._ipnode_exists:
            return
        body = IpNodeResource(apiVersion=f"{API_GROUP}/{API_VERSION}", kind="IpNode",
                              metadata=ObjectMeta(name=self.node), spec={})
        try:
            await self.client.create(body)
        except ApiError as exc:
            if exc.status.code != 409:
                raise
        self._ipnode_exists = True

    # --- liveness ------------------------------------------------------------
    async def heartbeat(self) -> None:
        """Renew the Lease named after the node every --hb, forever."""
        while True:
            try:
                await self._renew()
                self.last_renewed = time.monotonic()
                if self.fenced:
                    self.kick.set()
            except (ApiError, httpx.HTTPError, OSError) as exc:
                self._lease = None  # re-read on the next try
                _log.warning("cannot renew lease", node=self.node, error=str(exc))
            if self.opts.api_loss == "release" and not self.fenced and \
                    time.monotonic() - self.last_renewed > self.opts.lease_duration:
                self.kick.set()  # release now, not at the next refresh
            await asyncio.sleep(self.opts.hb)

    async def _renew(self) -> None:
        now = datetime.now(UTC)
        duration = max(1, math.ceil(self.opts.lease_duration))
        if self._lease is None:
            try:
                self._lease = await self.client.get(Lease, self.node,
                                                    namespace=self.opts.namespace)
            except ApiError as exc:
                if exc.status.code != 404:
                    raise
                self._lease = await self.client.create(Lease(
                    metadata=ObjectMeta(name=self.node, namespace=self.opts.namespace),
                    spec=LeaseSpec(holderIdentity=self.node, leaseDurationSeconds=duration,
                                   acquireTime=now, renewTime=now)))
                return
        assert self._lease.spec is not None
        self._lease.spec.holderIdentity = self.node
        self._lease.spec.leaseDurationSeconds = duration
        self._lease.spec.renewTime = now
        # Update with the resourceVersion we last saw: one request per beat;
        # a conflict (someone else wrote it) makes the next beat re-read.
        self._lease = await self.client.replace(self._lease)
