"""Scheduler CPU while nothing changes (issue 12, item 8), against the real API server.

N LoadBalancer Services (default 10,000) are allocated on M nodes (default
30) whose agents renew their Leases every 2 s (what 30 agents do) and whose
kubelets rewrite the Node status every 10 s (heartbeats); then the scheduler's
CPU is measured over a quiet minute: nothing the plan reads changes.

    .venv/bin/python bench/scheduler_idle.py [SERVICES [NODES [SECONDS]]]

The scheduler runs as a process under its shipped service account with the
default settings. Run it against another checkout's code with
PYTHONPATH=<that checkout>/src to compare.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _common import (  # type: ignore[import-not-found]
    Api,
    ServiceWatch,
    now,
    renew_lease,
    rss_cpu,
    scheduler_bench_plane,
)

from externalip_lab.controlplane.server import free_port

REPO = Path(__file__).resolve().parents[1]
NS, SVC_NS = "externalip", "idle"
LEASE_S, RENEW_S, HEARTBEAT_S = 6, 2.0, 10.0


class Cluster:
    """M Ready nodes with heartbeats, and their agents' Lease renewals."""

    def __init__(self, api: Api, nodes: list[str]) -> None:
        self.api, self.nodes, self.stop = api, nodes, threading.Event()
        self.renewals, self.slowest = 0, 0.0
        self.leases: dict[str, dict[str, object]] = {}
        for node in nodes:
            api.create("/api/v1/nodes", {"apiVersion": "v1", "kind": "Node",
                                         "metadata": {"name": node}})
        self.heartbeat()
        self.renew()
        threading.Thread(target=self._leases, daemon=True).start()
        threading.Thread(target=self._heartbeats, daemon=True).start()

    def heartbeat(self) -> None:
        for node in self.nodes:
            obj = self.api.request("GET", f"/api/v1/nodes/{node}")
            obj["status"] = {"conditions": [
                {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "",
                 "lastHeartbeatTime": now(), "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
            self.api.request("PUT", f"/api/v1/nodes/{node}/status", obj)

    def renew(self) -> None:
        """One renewal per agent, in parallel as 30 agents would (one after the
        other, a loaded API server would let the last ones lapse)."""
        start = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(self._renew, self.nodes))
        self.slowest = max(self.slowest, time.monotonic() - start)

    def _renew(self, node: str) -> None:
        renew_lease(self.api, self.leases, NS, node, LEASE_S)
        self.renewals += 1

    def _leases(self) -> None:
        while not self.stop.wait(RENEW_S):
            self.renew()

    def _heartbeats(self) -> None:
        while not self.stop.wait(HEARTBEAT_S):
            self.heartbeat()


def scheduler_counters(port: int) -> dict[str, float]:
    """Passes and writes so far, from the scheduler's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out = {"passes": 0.0, "writes": 0.0}
    for name, value in re.findall(r"^externalip_scheduler_(passes|writes)_total\S* (\S+)$", text,
                                  re.MULTILINE):
        out[name] += float(value)
    return out


def run(count: int, nodes: int, seconds: float) -> None:
    with scheduler_bench_plane(SVC_NS) as (cp, api, kubeconfig):
        cluster = Cluster(api, [f"node-{i:02}" for i in range(nodes)])
        log = open(cp.dir / "scheduler.log", "wb")  # noqa: SIM115
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "externalip", "scheduler",
                                 f"--kubeconfig={kubeconfig}",
                                 f"--metrics-addr=127.0.0.1:{port}",
                                 "--log-level=warning"], stdout=log, stderr=subprocess.STDOUT)
        try:
            time.sleep(2)
            watch = ServiceWatch(api, SVC_NS)
            names = [f"s{i:05}" for i in range(count)]

            def create(name: str) -> None:
                api.create(f"/api/v1/namespaces/{SVC_NS}/services", {
                    "apiVersion": "v1", "kind": "Service",
                    "metadata": {"name": name, "namespace": SVC_NS},
                    "spec": {"type": "LoadBalancer", "ipFamilies": ["IPv6"],
                             "allocateLoadBalancerNodePorts": False,
                             "ports": [{"port": 80}]}})
            with ThreadPoolExecutor(16) as pool:
                list(pool.map(create, names))
            ok = watch.wait(names, timeout=max(120, count / 5))
            watch.close()
            time.sleep(10)  # let the last status writes and passes settle
            _, cpu_before = rss_cpu(proc.pid)
            counters = scheduler_counters(port)
            renewals_before, start = cluster.renewals, time.monotonic()
            cluster.slowest = 0.0
            time.sleep(seconds)
            rss, cpu_after = rss_cpu(proc.pid)
            done = {k: v - counters[k] for k, v in scheduler_counters(port).items()}
            elapsed = time.monotonic() - start
            share = (cpu_after - cpu_before) / elapsed * 100
            rate = (cluster.renewals - renewals_before) / elapsed
            print(f"{count} LoadBalancer Services on {nodes} nodes (all allocated: {ok}); "
                  f"idle for {elapsed:.0f}s with {rate:.1f} Lease renewals/s and Node "
                  f"heartbeats every {HEARTBEAT_S:.0f}s:")
            print(f"  scheduler CPU {share:.2f}% of a core "
                  f"({cpu_after - cpu_before:.2f}s in {elapsed:.0f}s), RSS {rss:.0f} MiB, "
                  f"{done['passes']:.0f} passes, {done['writes']:.0f} writes; slowest round of "
                  f"renewals {cluster.slowest:.1f}s (Leases last {LEASE_S}s)")
        finally:
            cluster.stop.set()
            proc.terminate()
            proc.wait(timeout=30)
            log.close()


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args = [float(a) for a in sys.argv[1:]]
    run(int(args[0]) if args else 10000, int(args[1]) if len(args) > 1 else 30,
        args[2] if len(args) > 2 else 60.0)
