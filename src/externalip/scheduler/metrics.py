"""The scheduler's Prometheus metrics."""

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
PASS_SECONDS = Histogram("externalip_scheduler_pass_seconds",
                         "Time to build the world from the caches and plan it (no writes)",
                         buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5))
