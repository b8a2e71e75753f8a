"""One scheduler pass at scale, in one process, no API server.

A Scheduler's caches are filled with the JSON the API server would send:
N LoadBalancer Services, M Ready nodes with live Leases and IpNodes (each
hearing K peers, as k monitors would: full mesh stops at a few hundred
nodes, see docs/failover.md), and the claims of a converged allocation
(every plan's writes applied to the caches as the API server would). Then:

- a pass that changes nothing, and a pass after one new Service (medians);
- placement fairness: max - min claims per node (policy `fair`);
- a node dies: its standbys take its claims over (they write status.holder,
  as the agents do) and its Lease lapses; the pass that records the moves
  and the one after it.

    .venv/bin/python bench/scheduler_pass.py [SERVICES [NODES [PEERS]]]
                                             (default 10000 1000 8)

Times are the pass's CPU time (wall time on a shared machine measures the
neighbours). The same code the scheduler runs (Scheduler.world + core.desired.plan);
the API round trips are measured by scheduler_scale.py and scheduler_nodes.py.
"""

from __future__ import annotations

import gc
import statistics
import sys
import time
from collections import Counter
from typing import Any

from externalip.core import desired
from externalip.scheduler.controller import Options, Scheduler

CREATED = "2026-12-01T00:00:00Z"


def node(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {}, "resourceVersion": "1"},
            "spec": {}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}


def lease(name: str, renewed: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "externalip"},
            "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": renewed}}


def service(i: int) -> dict[str, Any]:
    return {"metadata": {"name": f"s{i:05}", "namespace": "scale", "uid": f"u{i}",
                         "creationTimestamp": CREATED, "resourceVersion": str(i)},
            "spec": {"type": "LoadBalancer", "ipFamilies": ["IPv6"],
                     "ports": [{"port": 80, "protocol": "TCP"}]}}


class Rig:
    def __init__(self, services: int, nodes: int, peers: int) -> None:
        self.s = Scheduler(None, Options())  # type: ignore[arg-type]  # no API: caches only
        self.nodes = [f"node-{i:04}" for i in range(nodes)]
        self.version = 10**6
        self.dead: set[str] = set()
        self.s.pools.store["v6"] = {"metadata": {"name": "v6"}, "spec": {
            "cidr": "2001:db8::/64", "ranges": [["2001:db8::1", "2001:db8::ffff"]]}}
        self.s.leases.connected_since = time.monotonic() - 100
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
        for i, name in enumerate(self.nodes):
            self.s.nodes.store[name] = node(name)
            self.s.tracker.observe(lease(name, now))
            heard = [self.nodes[(i + k) % nodes] for k in range(1, peers + 1)]
            self.s.ipnodes.store[name] = {"metadata": {"name": name},
                                          "status": {"peers": heard, "nodeAddresses": []}}
        for i in range(services):
            self.s.services.store[f"scale/s{i:05}"] = service(i)

    def renew(self) -> None:
        """Every live agent renews its Lease (outside the timed part)."""
        now = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{time.time_ns() % 10**9:09d}Z"
        for name in self.nodes:
            if name not in self.dead:
                self.s.tracker.observe(lease(name, now))

    def plan(self) -> tuple[desired.Plan, float]:
        """One pass (the world from the caches, then the plan) and its CPU time:
        on a shared machine wall time mostly measures the neighbours."""
        self.renew()
        start = time.thread_time()
        plan = desired.plan(self.s.world()[0])
        return plan, time.thread_time() - start

    def apply(self, plan: desired.Plan) -> None:
        """What the API server and the informers would make of the plan's writes."""
        for claim in [*plan.create, *plan.update]:
            self.version += 1
            obj = claim.to_object()
            obj["metadata"]["resourceVersion"] = str(self.version)
            obj["status"] = (self.s.claims.store.get(claim.name) or {}).get("status") or {}
            self.s.claims.store[claim.name] = obj
        for name in plan.delete:
            self.s.claims.store.pop(name, None)
        for key, ips in plan.ingress.items():
            old = self.s.services.store[key]
            self.s.services.store[key] = {**old, "status": {"loadBalancer": {
                "ingress": [{"ip": ip, "ipMode": "VIP"} for ip in ips]}}}

    def converge(self) -> int:
        for rounds in range(1, 10):
            plan, _ = self.plan()
            if not plan.writes:
                return rounds
            self.apply(plan)
        raise SystemExit("no fixed point")

    def take_over(self, dead: str) -> int:
        """The dead node's first live standby holds each of its claims now."""
        moved = 0
        for name, obj in list(self.s.claims.store.items()):
            spec = obj["spec"]
            if spec.get("nodeName") != dead:
                continue
            standby = next(n for n in spec.get("standbys") or () if n != dead)
            self.version += 1
            self.s.claims.store[name] = {**obj, "metadata": {
                **obj["metadata"], "resourceVersion": str(self.version)},
                "status": {"ready": True, "holder": standby, "since": CREATED, "term": 1,
                           "takenFrom": dead}}
            moved += 1
        self.dead.add(dead)
        self.s.tracker.forget(dead)  # its Lease lapsed
        for other in self.s.ipnodes.store.values():
            other["status"]["peers"] = [p for p in other["status"]["peers"] if p != dead]
        return moved


def per_node(rig: Rig) -> Counter[str]:
    return Counter(o["spec"].get("nodeName", "") for o in rig.s.claims.store.values())


def run(services: int, nodes: int, peers: int) -> None:
    rig = Rig(services, nodes, peers)
    start = time.perf_counter()
    rounds = rig.converge()
    gc.collect()
    gc.freeze()  # as the scheduler does once its caches are full (programs/scheduler.py)
    print(f"{services} Services on {nodes} nodes ({peers} peers heard per node): converged in "
          f"{rounds} passes, {time.perf_counter() - start:.1f}s")
    steady = [rig.plan()[1] for _ in range(10)]
    print(f"  a pass that changes nothing (CPU time): median "
          f"{statistics.median(steady) * 1000:.0f} ms (min {min(steady) * 1000:.0f}, n=10)")
    one = []
    for i in range(10):
        rig.s.services.store[f"scale/new{i}"] = {**service(services + i), "metadata": {
            **service(services + i)["metadata"], "name": f"new{i}"}}
        plan, took = rig.plan()
        rig.apply(plan)
        one.append(took)
        rig.converge()
    print(f"  a pass after one new Service: median {statistics.median(one) * 1000:.0f} ms "
          f"(min {min(one) * 1000:.0f}, n=10)")
    load = per_node(rig)
    print(f"  claims per node: min {min(load.values())} max {max(load.values())} "
          f"(max - min = {max(load.values()) - min(load.values())}), "
          f"{len(load)} nodes hold claims")
    dead = rig.nodes[0]
    moved = rig.take_over(dead)
    plan, took = rig.plan()
    recorded = [c for c in plan.update if c.status.holder == c.spec.node_name]
    rig.apply(plan)
    after, took_after = rig.plan()
    left = sum(1 for o in rig.s.claims.store.values() if o["spec"]["nodeName"] == dead)
    print(f"  {dead} dies, its standbys take its {moved} claims: the next pass records "
          f"{len(recorded)} moves in {took * 1000:.0f} ms (updates {len(plan.update)}), "
          f"{left} claims left on it; the pass after: {after.writes} writes, "
          f"{took_after * 1000:.0f} ms")
    load = per_node(rig)
    print(f"  claims per node after: min {min(load.values())} max {max(load.values())}")


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:]]
    run(args[0] if args else 10000, args[1] if len(args) > 1 else 1000,
        args[2] if len(args) > 2 else 8)
