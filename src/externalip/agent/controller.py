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
  addresses expire on their own. The IpNode gets the inventory change its
  pace held back, if any (agent.inventory).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from externalip import API_GROUP, API_VERSION, __version__, log
from externalip.agent.conflicts import Conflicts
from externalip.agent.failover import Failover
from externalip.agent.inventory import Inventory
from externalip.core.addresses import IPAddress, IPInterface
from externalip.core.claims import (
    StatusLedger,
    node_status,
    status_conditions,
    wants_from_claims,
)
from externalip.core.conditions import merge
from externalip.core.fence import Fence
from externalip.core.handover import Handover
from externalip.core.holding import Want, may_hold
from externalip.core.model import MESSAGE_MAX, Claim, ClaimStatus, role_label
from externalip.kube.api import CLAIMS, Api, ApiError, NotFoundError
from externalip.kube.events import WARNING, EventRecorder, ObjectRef
from externalip.kube.informer import Informer
from externalip.kube.leases import NodeLease
from externalip.kube.times import now_rfc3339
from externalip.net.holder import RECONCILE_ERRORS, AddressHolder
from externalip.net.portguard import PortGuard, guard_held
from externalip.net.probe import probe

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
            "conflict": status.conflict or None,
            "conditions": conditions,
        }
    }


class Agent:
    def __init__(self, opts: argparse.Namespace, api: Api, holder: AddressHolder,
                 failover: Failover | None = None, guard: PortGuard | None = None):
        self.opts, self.node, self.api = opts, str(opts.hostname), api
        self.holder, self.failover, self.guard = holder, failover, guard
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
        self._parsed: dict[str, Claim] = {}
        self.reconciled = False
        self._statuses = StatusLedger()
        self._problems: dict[str, str] = {}
        self.inventory = Inventory(api, self.node, opts.status_interval, self.report_kick.set)
        self._own: tuple[IPInterface, ...] = ()  # the node's own addresses, for the IpNode
        self.fenced = False
        self.fence = Fence()
        self.conflicts = Conflicts(probe if opts.probe else None)
        self.handover = Handover(opts.handover_delay)
        self._release_timer: asyncio.TimerHandle | None = None

    def _on_claim(self, event: str, obj: dict[str, Any]) -> None:
        """Kick a reconcile, except for status-only changes (our own writes, mostly):
        with 1,000 claims, each status write would otherwise cost a full pass."""
        name = obj["metadata"]["name"]
        # The holder matters too: a standby's takeover decides who holds. Our
        # own name there is the echo of our own status write (5,000 of them
        # after 5,000 new claims), which changes nothing we decide: not a kick.
        holder = (obj.get("status") or {}).get("holder")
        spec = (obj.get("spec"), None if holder == self.node else holder)
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
        rearming = self._contact_back()
        if rearming:  # a watch stalled with us may still owe the moves
            await self.claims.relist()
        claims = self._parse_claims()
        step = self.handover.step(claims, self.node, time.monotonic())
        self._release_after(step.next_due)
        hold = self.failover.select(claims) if self.failover is not None else \
            [c for c in claims if c.spec.node_name == self.node]
        wants, invalid = wants_from_claims(hold, "", self.opts.iface)
        wants += wants_from_claims(step.hold, "", self.opts.iface, handover=True)[0]
        wants += wants_from_claims(step.quiet, "", self.opts.iface, quiet=True)[0]
        if self.failover is None:
            wants = self.fence.filter(wants, self.renewing())
        if self._must_release():
            wants = []
        ports = {c.name: c.spec.ports for c in claims}
        own = {i.ip for i in self._own}
        wants = await self.conflicts.screen(claims, wants, {
            *own, *(w.interface.ip for w in self.holder.held)})
        invalid.update(self.conflicts.problems())
        # guarded before they are added: no moment with every port open
        guard_held(self.guard, (*self.holder.held, *may_hold(wants, self._own)), ports)
        result = await self.holder.reconcile(wants)
        guard_held(self.guard, result.held, ports)
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

    def _contact_back(self) -> bool:
        """Cut off, and free to act again (the fence may re-arm; without heartbeats, renewals
        pass while we yield what others took): our claims predate the cut, re-read them."""
        if self.failover is not None:
            return self.failover.may_rearm()
        return bool(self.fence.yielded) and self.renewing()

    def _release_after(self, due: float | None) -> None:
        """Reconcile again when the next handed-over address is due to go."""
        if self._release_timer is not None:
            self._release_timer.cancel()
        self._release_timer = None if due is None else \
            asyncio.get_running_loop().call_later(due + 0.01, self.kick.set)

    def _parse_claims(self) -> list[Claim]:
        """The stored claims, each parsed once per resourceVersion: with 5,000
        claims, parsing all of them on every pass was a quarter of the pass."""
        parsed: dict[str, Claim] = {}
        for key, obj in list(self.claims.store.items()):
            old = self._parsed.get(key)
            version = obj.get("metadata", {}).get("resourceVersion")
            if old is not None and version and old.resource_version == version:
                parsed[key] = old
                continue
            try:
                parsed[key] = Claim.from_object(obj)
            except (KeyError, TypeError, ValueError) as exc:
                _log.error("unreadable claim", claim=obj.get("metadata", {}).get("name"),
                           error=repr(exc))
        self._parsed = parsed
        return list(parsed.values())

    async def report(self) -> None:
        """Write what the last reconcile found: Events, claim statuses, IpNode
        (the IpNode at its own pace: agent.inventory)."""
        if self._report is None:
            return
        claims, held_wants, problems = self._report
        await self._report_problems(problems)
        await self._report_alarms()
        held = {owner for want in held_wants for owner in want.owners}
        await self._write_statuses(claims, held, problems)
        await self._report_conflicts()
        await self.inventory.report(node_status(
            self.opts.iface, held_wants, __version__, self._own,
            self.failover.heard() if self.failover else ()))

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
        """Another MAC announced ip (net.conflict); see agent.fence for the policy.
        For an address we hand over, that is the new holder: go quiet now."""
        handed = [w.owners[0] for w in self.holder.held
                  if w.interface.ip == ip and w.handover and not w.quiet]
        if handed:
            for name in handed:
                self.handover.announced(name)
            _log.info("the new holder announced an address we hand over; going quiet",
                      node=self.node, address=str(ip), mac=mac.hex(":"))
            self.kick.set()
        elif self.fence.heard(ip, self.holder.held, self.renewing()):
            _log.warning("another node announced our address while we are cut off from the "
                         "API; yielding it", node=self.node, address=str(ip), mac=mac.hex(":"))
            self.kick.set()
        elif self.renewing():
            held = [w for w in self.holder.held if w.interface.ip == ip and not w.handover]
            if held:
                _log.warning("another host announces an address assigned to this node",
                             node=self.node, address=str(ip), mac=mac.hex(":"))
                self.conflicts.heard(ip, mac, held[0].owners)
                self.report_kick.set()

    async def first_sync(self) -> None:
        """Reconcile once the claims are listed, even none: let go of what moved meanwhile."""
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
        conflicted = self.conflicts.macs()
        for name, why in problems.items():
            if self._problems.get(name) == why:
                continue  # already reported; the status carries it meanwhile
            _log.warning("claim refused", claim=name, reason=why)
            reason = "AddressConflict" if name in conflicted else "AddressRefused"
            await self.events.emit(self._claim_ref(name), WARNING, reason, why[:MESSAGE_MAX])
        self._problems = problems

    async def _report_conflicts(self) -> None:
        """A foreign MAC announced an address we hold (heard by net.conflict)."""
        for name, why in self.conflicts.heard_reports():
            await self.events.emit(self._claim_ref(name), WARNING, "AddressConflict",
                                   why[:MESSAGE_MAX])

    def _claim_ref(self, name: str) -> ObjectRef:
        obj = self.claims.store.get(name, {})
        return ObjectRef(f"{API_GROUP}/{API_VERSION}", "IpClaim", name,
                         uid=obj.get("metadata", {}).get("uid", ""))

    async def _write_statuses(
        self, claims: list[Claim], held: set[str], problems: dict[str, str]
    ) -> None:
        writes = self._statuses.due(claims, self.node, held=held, problems=problems,
                                    now=now_rfc3339(), conflicts=self.conflicts.macs())
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

    # --- liveness ------------------------------------------------------------
    def after_beat(self, renewed: bool) -> None:
        """After each Lease renewal attempt (kube.leases.NodeLease.run)."""
        if renewed and self.fenced:
            self.kick.set()  # hold our addresses again at once
        if not renewed and self.opts.api_loss == "release" and not self.fenced \
                and not self.lease_valid():
            self.kick.set()  # release now, not at the next refresh
