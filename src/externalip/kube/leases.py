"""All Lease logic: leader election, and which agents are alive.

Leader election on a coordination.k8s.io/v1 Lease, as client-go does it.

Every write to the Lease carries the resourceVersion read before it, so two
candidates can never both believe they took it (the API server lets one
update win). Expiry is judged on this process's monotonic clock from the
moment it last saw the record change, never by comparing wall clocks across
machines. A leader that has not renewed within `renew_deadline` stops being
leader at once, before the lease can expire for the others: at most one
writer at any time, given renew_deadline < lease_duration.

An agent's own Lease (NodeLease), renewed every --hb: the slow liveness
backstop the scheduler watches. One request per beat: a PUT with the
resourceVersion last seen; a conflict makes the next beat read it again.

Which agents are alive (LeaseTracker), judged from their Lease renewals on
our own clock.

A Lease is fresh while less than its leaseDurationSeconds has passed, on this
process's monotonic clock, since we last saw its renewTime change. Comparing
renewTime with our wall clock would make failover depend on clock skew
between machines; this does not.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from externalip import log
from externalip.kube.api import LEASES, Api, ApiError, ConflictError, NotFoundError
from externalip.kube.times import now_micro

LEASE_API = "coordination.k8s.io/v1"

_log = log.get(__name__)


class LeaderElector:
    def __init__(self, api: Api, namespace: str, name: str, identity: str, *,
                 lease_duration: float = 15.0, renew_deadline: float = 10.0,
                 retry_period: float = 2.0, clock: Callable[[], float] = time.monotonic,
                 on_change: Callable[[bool], None] | None = None) -> None:
        self._api = api
        self._namespace = namespace
        self.name, self.identity = name, identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self._clock = clock
        self._on_change = on_change
        self._leader = False
        self._last_renew = 0.0
        self._observed: tuple[str, float] | None = None  # (resourceVersion, when seen)

    @property
    def is_leader(self) -> bool:
        """True only while the last renewal is younger than the renew deadline."""
        if self._leader and self._clock() - self._last_renew > self.renew_deadline:
            self._set(False)
        return self._leader

    def _set(self, leader: bool) -> None:
        if leader != self._leader:
            self._leader = leader
            _log.info("leadership changed", lease=self.name, identity=self.identity,
                      leader=leader)
            if self._on_change:
                self._on_change(leader)

    async def run(self) -> None:
        while True:
            try:
                await self.try_acquire_or_renew()
            except (ApiError, OSError, ValueError) as exc:
                _log.warning("leader election round failed", lease=self.name, error=str(exc))
            _ = self.is_leader  # drops leadership when the deadline passed
            await asyncio.sleep(self.retry_period if not self._leader
                                else min(self.retry_period, self.renew_deadline / 3))

    def _spec(self, transitions: int, acquired: str) -> dict[str, Any]:
        return {"holderIdentity": self.identity,
                "leaseDurationSeconds": max(1, round(self.lease_duration)),
                "acquireTime": acquired, "renewTime": now_micro(),
                "leaseTransitions": transitions}

    async def try_acquire_or_renew(self) -> bool:
        started = self._clock()
        try:
            lease = await self._api.get(LEASES, self.name, self._namespace)
        except NotFoundError:
            body = {"apiVersion": LEASE_API, "kind": "Lease",
                    "metadata": {"name": self.name}, "spec": self._spec(0, now_micro())}
            try:
                await self._api.create(LEASES, body, self._namespace)
            except ConflictError:
                return False  # another candidate created it first
            self._won(started)
            return True
        spec = lease.get("spec") or {}
        version = lease["metadata"]["resourceVersion"]
        if self._observed is None or self._observed[0] != version:
            self._observed = (version, started)
        holder = spec.get("holderIdentity") or ""
        duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
        expired = started - self._observed[1] > duration
        if holder and holder != self.identity and not expired:
            self._set(False)
            return False
        transitions = int(spec.get("leaseTransitions") or 0)
        acquired = spec.get("acquireTime") or now_micro()
        if holder != self.identity:
            transitions += 1
            acquired = now_micro()
        lease["spec"] = self._spec(transitions, acquired)
        try:
            updated = await self._api.replace(LEASES, self.name, lease, self._namespace)
        except ConflictError:  # someone else wrote first
            self._set(False)
            return False
        self._observed = (updated["metadata"]["resourceVersion"], started)
        self._won(started)
        return True

    def _won(self, started: float) -> None:
        # Count from before the request: the lease may have been valid for
        # others from the moment the server applied it.
        self._last_renew = started
        self._set(True)

    async def release(self) -> None:
        """Give the lease up (graceful shutdown), so a standby takes over at once."""
        if not self._leader:
            return
        self._set(False)
        try:
            lease = await self._api.get(LEASES, self.name, self._namespace)
            if (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            lease["spec"]["holderIdentity"] = ""
            lease["spec"]["leaseDurationSeconds"] = 1
            await self._api.replace(LEASES, self.name, lease, self._namespace)
        except (ApiError, OSError) as exc:
            _log.warning("could not release the lease", lease=self.name, error=str(exc))


class NodeLease:
    """The Lease named after a node, renewed by that node's agent."""

    def __init__(self, api: Api, namespace: str, node: str, lease_duration: float, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._api = api
        self._namespace = namespace
        self.node = node
        self.duration = max(1, math.ceil(lease_duration))
        self._clock = clock
        self._lease: dict[str, Any] | None = None
        # Startup counts as a renewal, so a slow first contact does not make
        # the agent release anything.
        self.last_renewed = clock()

    def lapsed(self) -> float:
        """Seconds since the last successful renewal (on our monotonic clock)."""
        return self._clock() - self.last_renewed

    async def renew(self) -> None:
        """One renewal; raises ApiError (the next call then reads the Lease again)."""
        try:
            self._lease = await self._write()
        except ApiError:
            self._lease = None
            raise
        self.last_renewed = self._clock()

    async def run(self, period: float, after_beat: Callable[[bool], None]) -> None:
        """Renew every `period` seconds, forever; `after_beat(ok)` after each try."""
        while True:
            try:
                await self.renew()
                ok = True
            except (ApiError, OSError) as exc:
                _log.warning("cannot renew lease", node=self.node, error=str(exc))
                ok = False
            after_beat(ok)
            await asyncio.sleep(period)

    async def _write(self) -> dict[str, Any]:
        now = now_micro()
        if self._lease is None:
            try:
                self._lease = await self._api.get(LEASES, self.node, self._namespace)
            except NotFoundError:
                body = {"apiVersion": LEASE_API, "kind": "Lease",
                        "metadata": {"name": self.node, "namespace": self._namespace},
                        "spec": {"holderIdentity": self.node,
                                 "leaseDurationSeconds": self.duration,
                                 "acquireTime": now, "renewTime": now}}
                return await self._api.create(LEASES, body, self._namespace)
        spec = self._lease.setdefault("spec", {})
        spec.update(holderIdentity=self.node, leaseDurationSeconds=self.duration, renewTime=now)
        return await self._api.replace(LEASES, self.node, self._lease, self._namespace)


@dataclass
class _Seen:
    renew_time: str
    at: float
    duration: float


class LeaseTracker:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._seen: dict[str, _Seen] = {}

    def observe(self, lease: Mapping[str, Any]) -> None:
        name = lease["metadata"]["name"]
        spec = lease.get("spec") or {}
        renew = str(spec.get("renewTime") or "")
        duration = float(spec.get("leaseDurationSeconds") or 0)
        seen = self._seen.get(name)
        if seen is None or seen.renew_time != renew:
            # First sight counts as a renewal: a scheduler that starts must not
            # declare every node dead before it has watched them once.
            self._seen[name] = _Seen(renew, self._clock(), duration)
        else:
            seen.duration = duration

    def forget(self, name: str) -> None:
        self._seen.pop(name, None)

    def alive(self, name: str, watching_since: float | None = 0.0) -> bool:
        """Fresh, counting only silence we could have heard: `watching_since`
        is when our own watch of the Leases last (re)connected, None while it
        is down. After an API outage every agent gets one full lease duration
        to renew before it is judged, as at first sight."""
        seen = self._seen.get(name)
        if seen is None:
            return False
        if watching_since is None:
            return True  # we cannot tell, and cannot write either
        return self._clock() - max(seen.at, watching_since) < seen.duration

    def next_expiry(self, watching_since: float | None = 0.0) -> float | None:
        """Seconds until the next live Lease would expire, for a timely wake-up."""
        now = self._clock()
        start = watching_since or 0.0
        ends = [max(s.at, start) + s.duration for s in self._seen.values()]
        left = [end - now for end in ends if end > now]
        return min(left) if left else None
