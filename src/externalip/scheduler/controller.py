"""The scheduler loop: caches -> core.desired.plan -> writes.

One level-based pass over everything after any change (debounced), rather
than per-object handlers: the decision needs the whole picture (which
addresses are free, how loaded each node is), the pass is cheap next to the
API round trips, and a missed or doubled event cannot leave a wrong state
behind. Nothing is planned before every cache has synced, so a restarted
scheduler sees every existing claim before it could allocate anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from externalip import log
from externalip.core import desired, liveness, notices, placement, views
from externalip.core.model import Claim, Pool
from externalip.core.pools import AddressPool, PoolError, build
from externalip.kube.api import (
    CLAIMS,
    ENDPOINT_SLICES,
    IPNODES,
    LEASES,
    NODES,
    POOLS,
    SERVICES,
    Api,
)
from externalip.kube.events import WARNING, EventRecorder, ObjectRef
from externalip.kube.informer import DELETED, Informer
from externalip.kube.leases import LeaseTracker
from externalip.kube.paths import object_key
from externalip.loops import guarded
from externalip.scheduler import health, metrics, relevance, slim
from externalip.scheduler.backoff import Backoff
from externalip.scheduler.conflicts import Conflicts
from externalip.scheduler.memo import Memo
from externalip.scheduler.poolstatus import PoolStatus
from externalip.scheduler.refusals import Refusals
from externalip.scheduler.writer import Writer

_log = log.get(__name__)

# A full pass this often even when nothing seems to change: a safety net for
# anything an event filter could miss. Everything else wakes a pass itself.
FULL_PASS_EVERY = 300.0


@dataclass(frozen=True)
class Options:
    namespace: str = "externalip"
    mask4: int = 32
    mask6: int = 128
    policy: str = "fair"
    monitor: float = 4.0
    lb_class: str = "externalip.io/lb"
    default_class: bool = True
    status_interval: float = 10.0  # pool status pace (scheduler.poolstatus); 0: every change


class Scheduler:
    def __init__(self, api: Api, opts: Options,
                 is_leader: Callable[[], bool] = lambda: True) -> None:
        self.opts = opts
        self._is_leader = is_leader
        self.services = Informer(api, SERVICES, transform=slim.service)
        self.claims = Informer(api, CLAIMS)
        self.pools = Informer(api, POOLS)
        self.nodes = Informer(api, NODES, transform=slim.node)
        self.leases = Informer(api, LEASES, namespace=opts.namespace)
        self.slices = Informer(api, ENDPOINT_SLICES)
        self.ipnodes = Informer(api, IPNODES, transform=slim.ipnode)
        self.informers = [self.services, self.claims, self.pools, self.nodes, self.leases,
                          self.slices, self.ipnodes]
        self.tracker = LeaseTracker()
        self._wake = asyncio.Event()
        self._service_views = Memo(lambda obj: views.service_view(obj, opts.lb_class,
                                                                  opts.default_class))
        self._claim_views = Memo(Claim.from_object)
        self._placement = placement.Memo()
        # Only events that change what the plan reads wake a pass (relevance.py);
        # the views it makes for that are the ones the next pass reads.
        for inf, digest in ((self.services, lambda o: self._service_views.view(object_key(o), o)),
                            (self.claims, lambda o: relevance.claim_digest(
                                self._claim_views.view(object_key(o), o))),
                            (self.pools, relevance.pool_digest),
                            (self.nodes, relevance.node_digest),
                            (self.slices, relevance.slice_digest),
                            (self.ipnodes, relevance.ipnode_digest)):
            inf.add_handler(self._waker(relevance.Relevance(digest)))
        self.leases.add_handler(self._on_lease)
        self.backoff = Backoff()
        self.refusals = Refusals()
        self.conflicts = Conflicts()
        self._alive_at_pass: set[str] | None = None
        self._last_pass = -math.inf
        self._retry_in = 0.0  # after a pass that failed outright (a bug, or the API)
        self.recorder = EventRecorder(api, "externalip-scheduler")
        self.clock = metrics.AllocationClock(lambda svc: views.serves_load_balancer(
            svc.get("spec") or {}, opts.lb_class, opts.default_class))
        self.services.add_handler(self.clock.observe)
        self.writer = Writer(api, claims=self.claims.store, services=self.services.store,
                             pools=self.pools.store, may_write=is_leader,
                             allocated=self.clock.written)
        self._last_events: set[desired.Event] = set()
        self.pool_status = PoolStatus(self.writer, self.recorder, self.pools.store,
                                      interval=opts.status_interval, wake=self._wake.set)
        self._nodes_shown: set[str] = set()

    def _waker(self, seen: relevance.Relevance) -> Callable[[str, dict[str, Any]], None]:
        def handle(kind: str, obj: dict[str, Any]) -> None:
            if seen.changed(kind, obj):
                self._wake.set()
        return handle

    def _on_lease(self, kind: str, obj: dict[str, Any]) -> None:
        """A renewal of a live agent changes nothing; a Lease that appears,
        goes, or comes back from expiry does. Expiries are timed by the loop."""
        name = obj["metadata"]["name"]
        was = self.tracker.alive(name, self.leases.connected_since)
        if kind == DELETED:
            self.tracker.forget(name)
        else:
            self.tracker.observe(obj)
        if self.tracker.alive(name, self.leases.connected_since) != was:
            self._wake.set()

    @property
    def synced(self) -> bool:
        return all(inf.synced for inf in self.informers)

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        tasks = [asyncio.create_task(inf.run()) for inf in self.informers]
        try:
            await asyncio.gather(*(inf.wait_synced() for inf in self.informers))
            _log.info("caches synced", services=len(self.services.store),
                      claims=len(self.claims.store), pools=len(self.pools.store))
            # The caches live as long as the process: out of the collector's
            # sight, full collections no longer walk them during passes.
            gc.collect()
            gc.freeze()
            await self._loop()
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _loop(self) -> None:
        while True:
            timeout = self.opts.monitor
            expiry = self.tracker.next_expiry(self.leases.connected_since)
            if expiry is not None:
                timeout = min(timeout, expiry + 0.01)
            retry = self.backoff.next_due()
            if retry is not None:
                timeout = min(timeout, retry + 0.01)
            if self._retry_in:
                timeout = min(timeout, self._retry_in)
            woken = False
            with contextlib.suppress(TimeoutError):
                woken = await asyncio.wait_for(self._wake.wait(), timeout)
            self._wake.clear()
            if not self._is_leader():
                self._last_pass = -math.inf  # a new leader starts with a full pass
                continue
            if not woken and not self._pass_due():
                continue
            await asyncio.sleep(0.02)  # let a burst of events land in the caches first
            self._wake.clear()
            if await guarded(self.reconcile, "scheduler"):
                self._retry_in = 0.0
            else:  # the whole pass failed: try again, later each time
                self._retry_in = min(30.0, max(0.5, self._retry_in * 2))
                self._last_pass = -math.inf

    def _pass_due(self) -> bool:
        """After a quiet wait, a pass is due only if a node's liveness changed, a
        held-back write may be retried, or the periodic full pass is due."""
        return (set(self._eligible_nodes()) != self._alive_at_pass
                or self.backoff.next_due() == 0.0
                or time.monotonic() - self._last_pass >= FULL_PASS_EVERY)

    def world(self) -> tuple[desired.World, dict[str, str]]:
        """What the plan reads, from the caches (and the pools that are unusable).
        Objects unchanged since the last pass keep their views (memo.py)."""
        pools, broken = self._pools()
        nodes, draining = self._eligible_nodes(), self._draining()
        return desired.World(
            services=self._service_views.over(self.services.store),
            claims=self._claim_views.over(self.claims.store),
            pools=pools,
            nodes=nodes,
            endpoints=views.endpoint_nodes(self.slices.store),
            mask4=self.opts.mask4, mask6=self.opts.mask6, policy=self.opts.policy,
            node_addresses=views.node_addresses(self.nodes.store, self.ipnodes.store),
            held=views.held_addresses({n: o for n, o in self.ipnodes.store.items()
                                       if n in self.nodes.store}),
            refused=self.refusals.observe(self.claims.store),
            conflicts=self.conflicts.observe(self.claims.store),
            draining=draining & nodes.keys(),  # a dead node hands nothing over
            memo=self._placement,
        ), broken

    async def reconcile(self) -> desired.Plan:
        metrics.PASSES.inc()
        started = time.perf_counter()
        world, broken = self.world()
        pools = list(world.pools)
        self._alive_at_pass, self._last_pass = set(world.nodes), time.monotonic()
        plan = desired.plan(world)
        metrics.PASS_SECONDS.observe(time.perf_counter() - started)
        todo = self.backoff.hold_back(plan)  # objects whose writes failed wait their turn
        if todo.writes:
            await self.writer.apply(todo)
        self.backoff.record(todo, plan, self.claims.store, self.services.store)
        await self._emit(notices.fold_warnings(plan.events))
        await self.pool_status.write(pools, broken, world)
        draining = self._draining()
        await self._mirror_draining(draining)
        await health.write(self.writer, self.ipnodes.store, self._alive(), world, plan)
        self._metrics(world)
        return plan

    def _pools(self) -> tuple[list[AddressPool], dict[str, str]]:
        good, broken = [], {}
        for name, obj in sorted(self.pools.store.items()):
            try:
                good.append(build(Pool.from_object(obj)))
            except (PoolError, KeyError) as exc:
                broken[name] = str(exc)
        return good, broken

    def _alive(self) -> set[str]:
        since = self.leases.connected_since
        return set(liveness.backstop_alive(
            {n for n in self.nodes.store if self.tracker.alive(n, since)},
            {n: (o.get("status") or {}).get("peers") or () for n, o in self.ipnodes.store.items()}))

    def _eligible_nodes(self) -> dict[str, dict[str, str]]:
        alive = self._alive()
        return {name: dict(obj["metadata"].get("labels") or {})
                for name, obj in self.nodes.store.items()
                if views.node_usable(obj) and name in alive}

    def _draining(self) -> frozenset[str]:
        return frozenset(n for n, o in self.nodes.store.items() if views.node_draining(o))

    async def _mirror_draining(self, draining: frozenset[str]) -> None:
        """IpNode spec.draining follows the Node's drain label, for `kubectl get
        ipnodes` (a printer column): it says the scheduler has seen the drain."""
        for name, obj in list(self.ipnodes.store.items()):
            want = name in draining
            if bool((obj.get("spec") or {}).get("draining")) != want:
                await self.writer.patch_ipnode_draining(name, want)

    async def _emit(self, events: list[desired.Event]) -> None:
        current = set(events)
        for event in events:
            if event in self._last_events or event.service not in self.services.store:
                continue
            if event.type == WARNING:
                metrics.ALLOCATION_ERRORS.labels(event.reason).inc()
            obj = self.services.store[event.service]
            await self.recorder.emit(ObjectRef.of({**obj, "apiVersion": "v1",
                                                   "kind": "Service"}),
                                     event.type, event.reason, event.message)
            _log.info("service event", service=event.service, reason=event.reason,
                      message=event.message)
        self._last_events = current

    def _metrics(self, world: desired.World) -> None:
        per_node: dict[str, int] = dict.fromkeys(self.nodes.store, 0)
        for claim in world.claims.values():
            if claim.spec.node_name:
                per_node[claim.spec.node_name] = per_node.get(claim.spec.node_name, 0) + 1
        for node, count in per_node.items():
            metrics.CLAIMS_PER_NODE.labels(node).set(count)
        metrics.prune(metrics.CLAIMS_PER_NODE, self._nodes_shown, per_node)
        self._nodes_shown = set(per_node)
