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
import contextlib
from typing import Any

from externalip import API_GROUP, API_VERSION, __version__, log
from externalip.agent.failover import Failover
from externalip.core.addresses import IPAddress, IPInterface
from externalip.core.claims import (
    StatusLedger,
    node_status,
    status_conditions,
    wants_from_claims,
)
from externalip.core.conditions import merge
from externalip.core.fence import Fence
from externalip.core.holding import Want
from externalip.core.model import MESSAGE_MAX, Claim, ClaimStatus, NodeStatus, role_label
from externalip.kube.api import CLAIMS, IPNODES, Api, ApiError, ConflictError, NotFoundError
from externalip.kube.events import WARNING, EventRecorder, ObjectRef
from externalip.kube.informer import Informer
from externalip.kube.leases import NodeLease
from externalip.kube.times import now_rfc3339
from externalip.net.holder import RECONCILE_ERRORS, AddressHolder

_log = log.get(__name__)
STATUS_WRITES_IN_FLIGHT = 8


def _status_patch(claim: Claim, status: ClaimStatus, now: str) -> dict[str, Any]:
    # A merge patch: empty fields are sent as null so an old value goes away;
    # the conditions list is replaced whole, so it carries everyone's.
    conditions = merge(claim.conditions, status_conditions(claim, status), now)
    return {
        "status": {
            "ready": status.ready,
            "holder": status.holder or None,
            "since": status.since or None,
            "message": status.message[:MESSAGE_MAX] or None,
            "term": status.term or None,
            "takenFrom": status.taken_from or None,
            "conditions": conditions,
        }
    }


class Agent:
    def __init__(self, opts: argparse.Namespace, api: Api, holder: AddressHolder,
                 failover: Failover | None = None):
        self.opts = opts
        self.node: str = opts.hostname
        self.api = api
        self.holder = holder
        self.failover = failover
        # the claims this node holds and those it stands by for (to take them
        # over without the API), in one watch
        self.claims = Informer(api, CLAIMS, labels={role_label(self.node): ""})
        self.events = EventRecorder(api, "externalip-agent", self.node)
        self.lease = NodeLease(api, opts.namespace, self.node, opts.lease_duration)
        self.kick = asyncio.Event()
        self.report_kick = asyncio.Event()
        self.kick.set()  # the first pass runs as soon as the claims are listed
        self._report: tuple[list[Claim], tuple[Want, ...], dict[str, str]] | None = None
        self.claims.add_handler(self._on_claim)
        self._specs: dict[str, Any] = {}
        self.reconciled = False
        self._statuses = StatusLedger()
        self._problems: dict[str, str] = {}
        self._node_status: NodeStatus | None = None
        self._own: tuple[IPInterface, ...] = ()  # the node's own addresses, for the IpNode
        self._ipnode_exists = False
        self.fenced = False
        self.fence = Fence()

    def _on_claim(self, event: str, obj: dict[str, Any]) -> None:
        """Kick a reconcile, except for status-only changes (our own writes, mostly):
        with 1,000 claims, each status write would otherwise cost a full pass."""
        name = obj["metadata"]["name"]
        # the holder matters too: a standby's takeover decides who holds
        spec = (obj.get("spec"), (obj.get("status") or {}).get("holder"))
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
        rearming = self.failover is not None and self.failover.may_rearm()
        if rearming:
            # The fence opens again only on claims read after it lapsed: a
            # watch that was stalled with us may still owe the takeovers.
            await self.claims.relist()
        claims: list[Claim] = []
        for obj in list(self.claims.store.values()):
            try:
                claims.append(Claim.from_object(obj))
            except (KeyError, TypeError, ValueError) as exc:
                _log.error("unreadable claim", claim=obj.get("metadata", {}).get("name"),
                           error=repr(exc))
        if self.failover is not None:
            wants, invalid = wants_from_claims(self.failover.select(claims), "", self.opts.iface)
        else:
            wants, invalid = wants_from_claims(claims, self.node, self.opts.iface)
            wants = self.fence.filter(wants, self.renewing())
        if self._must_release():
            wants = []
        result = await self.holder.reconcile(wants)
        if self.failover is not None:
            self.failover.held(result.held)
            if rearming:
                self.failover.rearm()
                if self.failover.armed:  # plan again with the fence open: takeovers
                    self.kick.set()
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
        await self._report_alarms()
        held = {owner for want in held_wants for owner in want.owners}
        await self._write_statuses(claims, held, problems)
        await self._write_node_status(held_wants)

    async def _report_alarms(self) -> None:
        """A known peer's heartbeats fail authentication: say so where people look."""
        for peer in self.failover.alarms() if self.failover else ():
            ref = ObjectRef(f"{API_GROUP}/{API_VERSION}", "IpNode", self.node)
            await self.events.emit(ref, WARNING, "HeartbeatAuthFailed",
                                   f"heartbeats in the name of {peer} fail authentication: "
                                   "a key missing here or there, or a forgery on the segment")

    def renewing(self) -> bool:
        """Our Lease renewals are going through (at most one renewal missed)."""
        return bool(self.lease.lapsed() <= float(self.opts.hb) * 1.5 + 0.5)

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
        return bool(self.lease.lapsed() <= float(self.opts.lease_duration))

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
        writes = self._statuses.due(claims, self.node, held=held, problems=problems,
                                    now=now_rfc3339())
        by_name = {c.name: c for c in claims}
        # A few writes in flight: after a failover 1,000 statuses are due, and
        # one at a time they would take a round trip each.
        slots = asyncio.Semaphore(STATUS_WRITES_IN_FLIGHT)

        async def write(name: str, status: ClaimStatus) -> None:
            async with slots:
                try:
                    await self.api.merge_patch(CLAIMS, name, _status_patch(
                        by_name[name], status, now_rfc3339()), subresource="status")
                except NotFoundError:
                    return  # deleted meanwhile
                except (ApiError, OSError) as exc:  # retried on the next run
                    RECONCILE_ERRORS.labels("status").inc()
                    _log.warning("cannot write claim status", claim=name, error=str(exc))
                    return
            self._statuses.wrote(by_name[name], status)
            _log.info("claim status written", claim=name, ready=status.ready)

        await asyncio.gather(*(write(name, status) for name, status in writes.items()))
        self._statuses.keep(by_name)

    async def _write_node_status(self, held: tuple[Want, ...]) -> None:
        status = node_status(self.opts.iface, held, __version__, self._own,
                             self.failover.heard() if self.failover else ())
        if status == self._node_status:
            return
        try:
            await self._ensure_ipnode()
            await self.api.merge_patch(IPNODES, self.node, {"status": status.to_dict()},
                                       subresource="status")
        except (ApiError, OSError) as exc:
            if isinstance(exc, NotFoundError):
                self._ipnode_exists = False  # deleted by someone: create it again next time
            RECONCILE_ERRORS.labels("ipnode").inc()
            _log.warning("cannot write IpNode status", node=self.node, error=str(exc))
            return
        self._node_status = status

    async def _ensure_ipnode(self) -> None:
        if self._ipnode_exists:
            return
        body = {"apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": "IpNode",
                "metadata": {"name": self.node}, "spec": {}}
        with contextlib.suppress(ConflictError):  # it exists: what we wanted
            await self.api.create(IPNODES, body)
        self._ipnode_exists = True

    # --- liveness ------------------------------------------------------------
    def after_beat(self, renewed: bool) -> None:
        """After each Lease renewal attempt (kube.leases.NodeLease.run)."""
        if renewed and self.fenced:
            self.kick.set()  # hold our addresses again at once
        if not renewed and self.opts.api_loss == "release" and not self.fenced \
                and not self.lease_valid():
            self.kick.set()  # release now, not at the next refresh
