"""The scheduler's Prometheus metrics."""

import time
from collections.abc import Callable, Collection
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

POOL_SIZE = Gauge("externalip_pool_addresses", "Usable addresses in a pool", ["pool"])
POOL_USED = Gauge("externalip_pool_addresses_used", "Addresses of a pool held by claims",
                  ["pool"])
CLAIMS_PER_NODE = Gauge("externalip_claims", "Claims assigned to a node", ["node"])
FAILOVERS = Counter("externalip_failovers_total",
                    "Claims moved away from a node that stopped being eligible")
ALLOCATION_ERRORS = Counter("externalip_allocation_errors_total",
                            "Allocations that failed, by reason", ["reason"])
WRITES = Counter("externalip_scheduler_writes_total", "Writes to the API server, by kind",
                 ["kind", "result"])
LEADER = Gauge("externalip_scheduler_leader", "1 while this replica is the leader")
PASSES = Counter("externalip_scheduler_passes_total", "Reconcile passes run by the leader")
ALLOCATION_SECONDS = Histogram(
    "externalip_allocation_seconds",
    "From a LoadBalancer Service seen without an address to its address written in "
    "status.loadBalancer",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))


def prune(gauge: Gauge, before: Collection[str], now: Collection[str]) -> None:
    """Remove the series of pools or nodes that are gone, as MetalLB does
    (`deleteStatsFor`): a dashboard must not show ghosts."""
    for gone in set(before) - set(now):
        try:
            gauge.remove(gone)
        except KeyError:  # never set
            continue


class AllocationClock:
    """When each Service still waiting for an address was first seen, to time
    its allocation; forgotten once written or deleted (bounded by Services)."""

    def __init__(self, wants: Callable[[dict[str, Any]], bool],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._wants, self._clock = wants, clock
        self._seen: dict[str, float] = {}

    def observe(self, kind: str, obj: dict[str, Any]) -> None:
        """An informer handler for Services."""
        meta = obj["metadata"]
        key = f"{meta.get('namespace', '')}/{meta['name']}"
        ingress = ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress")
        if kind == "DELETED" or not self._wants(obj):
            self._seen.pop(key, None)
        elif not ingress:
            self._seen.setdefault(key, self._clock())
        # with an address: `written` stops the clock; the watch often delivers
        # our own write before its response is read, so this must not

    def written(self, key: str, ips: tuple[str, ...]) -> None:
        since = self._seen.pop(key, None) if ips else None
        if since is not None:
            ALLOCATION_SECONDS.observe(self._clock() - since)
PASS_SECONDS = Histogram("externalip_scheduler_pass_seconds",
                         "Time to build the world from the caches and plan it (no writes)",
                         buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5))
