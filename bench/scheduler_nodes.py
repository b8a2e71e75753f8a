"""The scheduler with 1,000 nodes (issue 16 item 6), against the real API server.

A light simulator stands in for the agents: M Ready Nodes, their Leases
renewed every 10 s for 40 s (the agent's defaults; in parallel, as M agents
would), and IpNodes whose status names the K peers each agent hears (k
monitors per node: full mesh stops at a few hundred nodes, docs/failover.md).
N LoadBalancer Services are created at once; then:

- fairness: claims per node, max - min (policy `fair`);
- the scheduler's passes (its externalip_scheduler_pass_seconds histogram);
- a node dies: its Lease stops, its peers stop hearing it, and for each of
  its claims the first standby writes status.holder as the agent that takes
  an address over does (docs/failover.md); until the scheduler has recorded
  every move (spec.nodeName = the holder).

    .venv/bin/python bench/scheduler_nodes.py [SERVICES [NODES [PEERS]]]
                                               (default 10000 1000 8)
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from _common import (  # type: ignore[import-not-found]
    Api,
    ServiceWatch,
    now,
    renew_lease,
    rss_cpu,
    scheduler_bench_plane,
)

from externalip_lab.controlplane.server import free_port

NS, SVC_NS = "externalip", "nodes"
LEASE_S, RENEW_S = 40, 10.0
CLAIMS = "/apis/ipcontroller.ext/v1/ipclaims"
IPNODES = "/apis/ipcontroller.ext/v1/ipnodes"


class Simulator:
    """M nodes: Node objects, Leases renewed in parallel, IpNodes with peers."""

    def __init__(self, api: Api, nodes: list[str], peers: int) -> None:
        self.api, self.nodes, self.peers = api, nodes, peers
        self.alive, self.stop = set(nodes), threading.Event()
        self.leases: dict[str, dict[str, object]] = {}
        self.late = 0
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(self._node, range(len(nodes))))
        threading.Thread(target=self._renewals, daemon=True).start()

    def heard_by(self, index: int) -> list[str]:
        n = len(self.nodes)
        return [self.nodes[(index + k) % n] for k in range(1, self.peers + 1)]

    def _node(self, index: int) -> None:
        name = self.nodes[index]
        self.api.create("/api/v1/nodes", {"apiVersion": "v1", "kind": "Node",
                                          "metadata": {"name": name}})
        obj = self.api.request("GET", f"/api/v1/nodes/{name}")
        obj["status"] = {"conditions": [{"type": "Ready", "status": "True",
                                         "reason": "KubeletReady", "message": "",
                                         "lastHeartbeatTime": now(),
                                         "lastTransitionTime": now()}]}
        self.api.request("PUT", f"/api/v1/nodes/{name}/status", obj)
        self.api.create(IPNODES, {"apiVersion": "ipcontroller.ext/v1", "kind": "IpNode",
                                  "metadata": {"name": name}, "spec": {}})
        self.set_peers(index, self.heard_by(index))
        self._renew(name)

    def set_peers(self, index: int, peers: list[str]) -> None:
        self.api.request("PATCH", f"{IPNODES}/{self.nodes[index]}/status",
                         {"status": {"peers": peers, "nodeAddresses": []}},
                         content_type="application/merge-patch+json")

    def _renew(self, node: str) -> None:
        renew_lease(self.api, self.leases, NS, node, LEASE_S)

    def _renewals(self) -> None:
        while not self.stop.wait(RENEW_S):
            start = time.monotonic()
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(self._renew, sorted(self.alive)))
            if time.monotonic() - start > LEASE_S - RENEW_S:
                self.late += 1

    def kill(self, index: int) -> None:
        """The node dies: no more renewals, and no peer hears it any more."""
        dead = self.nodes[index]
        self.alive.discard(dead)
        watchers = [i for i in range(len(self.nodes)) if dead in self.heard_by(i)]
        for i in watchers:
            self.set_peers(i, [p for p in self.heard_by(i) if p != dead])


def pass_seconds(port: int) -> tuple[float, float, float]:
    """(passes, seconds in passes, share of passes under 100 ms) from /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    def value(pattern: str) -> float:
        found = re.search(pattern, text, re.MULTILINE)
        return float(found.group(1)) if found else 0.0
    count = value(r"^externalip_scheduler_pass_seconds_count (\S+)$")
    total = value(r"^externalip_scheduler_pass_seconds_sum (\S+)$")
    fast = value(r'^externalip_scheduler_pass_seconds_bucket\{le="0.1"\} (\S+)$')
    return count, total, fast


def take_over(api: Api, dead: str) -> list[tuple[str, str]]:
    """What the dead node's standbys do: each first standby writes itself as the
    holder of the claims it took (the agent's status patch)."""
    claims = api.request("GET", f"{CLAIMS}?labelSelector=ipnode%3D{dead}")["items"]
    moved = []

    def one(claim: dict[str, object]) -> None:
        spec = claim["spec"]
        assert isinstance(spec, dict)
        holder = next(n for n in spec.get("standbys") or () if n != dead)
        name = claim["metadata"]["name"]  # type: ignore[index]
        api.request("PATCH", f"{CLAIMS}/{name}/status", {"status": {
            "ready": True, "holder": holder, "since": now(), "term": 1, "takenFrom": dead}},
            content_type="application/merge-patch+json")
        moved.append((name, holder))
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(one, claims))
    return moved


def run(count: int, nodes: int, peers: int) -> None:
    with scheduler_bench_plane(SVC_NS) as (cp, api, kubeconfig):
        start = time.monotonic()
        sim = Simulator(api, [f"node-{i:04}" for i in range(nodes)], peers)
        print(f"{nodes} simulated nodes (Leases every {RENEW_S:.0f}s, {peers} peers each) in "
              f"{time.monotonic() - start:.0f}s", flush=True)
        log = open(cp.dir / "scheduler.log", "wb")  # noqa: SIM115
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "externalip", "scheduler",
                                 f"--kubeconfig={kubeconfig}", f"--metrics-addr=127.0.0.1:{port}",
                                 "--log-level=warning"], stdout=log, stderr=subprocess.STDOUT)
        try:
            time.sleep(3)
            watch = ServiceWatch(api, SVC_NS)
            names = [f"s{i:05}" for i in range(count)]
            t0 = time.monotonic()

            def create(name: str) -> None:
                api.create(f"/api/v1/namespaces/{SVC_NS}/services", {
                    "apiVersion": "v1", "kind": "Service",
                    "metadata": {"name": name, "namespace": SVC_NS},
                    "spec": {"type": "LoadBalancer", "ipFamilies": ["IPv6"],
                             "allocateLoadBalancerNodePorts": False, "ports": [{"port": 80}]}})
            with ThreadPoolExecutor(16) as pool:
                list(pool.map(create, names))
            created = time.monotonic() - t0
            ok = watch.wait(names, timeout=max(300, count / 5))
            last = max(t for t, _ in watch.got_ip.values()) - t0 if ok else float("nan")
            watch.close()
            time.sleep(5)
            claims = api.request("GET", CLAIMS)["items"]
            load = Counter(c["spec"].get("nodeName", "") for c in claims)
            per_node = [load.get(n, 0) for n in sim.nodes]
            passes, spent, fast = pass_seconds(port)
            rss, cpu = rss_cpu(proc.pid)
            print(f"{count} Services: created in {created:.0f}s, all have an IP {last:.1f}s "
                  f"after the first create ({last - created:.1f}s after the last; all: {ok})")
            print(f"  claims per node: min {min(per_node)} max {max(per_node)} "
                  f"(max - min = {max(per_node) - min(per_node)})")
            print(f"  passes so far: {passes:.0f}, mean {spent / max(passes, 1) * 1000:.0f} ms, "
                  f"{fast / max(passes, 1) * 100:.0f}% under 100 ms; scheduler RSS {rss:.0f} MiB, "
                  f"CPU {cpu:.1f}s; Lease rounds that ran late: {sim.late}", flush=True)
            victim = max(sim.nodes, key=lambda n: load.get(n, 0))
            before = pass_seconds(port)
            sim.kill(sim.nodes.index(victim))
            t1 = time.monotonic()
            moved = take_over(api, victim)
            wrote = time.monotonic() - t1
            want = dict(moved)
            while True:
                items = api.request("GET", f"{CLAIMS}?labelSelector=ipnode%3D{victim}")["items"]
                if not items:
                    break
                time.sleep(0.1)
            recorded = time.monotonic() - t1
            got = {c["metadata"]["name"]: c["spec"].get("nodeName")
                   for c in api.request("GET", CLAIMS)["items"] if c["metadata"]["name"] in want}
            after = pass_seconds(port)
            n, s = after[0] - before[0], after[1] - before[1]
            print(f"  {victim} dies holding {len(moved)} claims; its standbys wrote their "
                  f"statuses in {wrote:.1f}s; all moves recorded {recorded:.1f}s after the "
                  f"first status write; recorded on the standby that took it: "
                  f"{sum(got.get(k) == v for k, v in want.items())}/{len(want)}; "
                  f"{n:.0f} passes meanwhile, mean {s / max(n, 1) * 1000:.0f} ms")
        finally:
            sim.stop.set()
            proc.terminate()
            proc.wait(timeout=30)
            log.close()


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args = [int(a) for a in sys.argv[1:]]
    run(args[0] if args else 10000, args[1] if len(args) > 1 else 1000,
        args[2] if len(args) > 2 else 8)
