"""Scheduler at scale, against the real API server (no data plane):
N LoadBalancer Services created at once until all have an IP, API requests
per Service (counted at the API server), scheduler RSS and CPU, and failover
detection (agent Lease stops being renewed -> claims moved), median and p99.

    .venv/bin/python bench/scheduler_scale.py [N ...]      (default 1000 10000)

The scheduler runs as a process under its shipped service account, with the
default settings; agents are Leases this script renews (3 nodes, 6 s leases
as the agent's default).
"""

from __future__ import annotations

import datetime
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _common import (  # type: ignore[import-not-found]
    Api,
    ServiceWatch,
    p99,
    rss_cpu,
    scheduler_bench_plane,
    summary,
)

REPO = Path(__file__).resolve().parents[1]
NS, SVC_NS = "externalip", "scale"
NODES = ["node-a", "node-b", "node-c"]
LEASE_S = 6


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Agents:
    def __init__(self, api: Api) -> None:
        self.api, self.alive, self.stop = api, set(NODES), threading.Event()
        self.last_renew: dict[str, float] = {}
        for node in NODES:
            api.create("/api/v1/nodes", {"apiVersion": "v1", "kind": "Node",
                                         "metadata": {"name": node}})
            obj = api.request("GET", f"/api/v1/nodes/{node}")
            obj["status"] = {"conditions": [
                {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "",
                 "lastHeartbeatTime": now(), "lastTransitionTime": now()}]}
            api.request("PUT", f"/api/v1/nodes/{node}/status", obj)
        self.renew()
        threading.Thread(target=self._loop, daemon=True).start()

    def renew(self) -> None:
        for node in sorted(self.alive):
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": node, "namespace": NS},
                    "spec": {"holderIdentity": node, "leaseDurationSeconds": LEASE_S,
                             "renewTime": now()}}
            path = f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases"
            current = self.api.request("GET", f"{path}/{node}", ok=(200, 404))
            if current.get("kind") != "Lease":
                self.api.create(path, body)
            else:
                current["spec"] = body["spec"]
                self.api.request("PUT", f"{path}/{node}", current)
            self.last_renew[node] = time.monotonic()

    def _loop(self) -> None:
        while not self.stop.wait(2.0):
            self.renew()


def run(count: int) -> None:
    with scheduler_bench_plane(SVC_NS) as (cp, api, kubeconfig):
        agents = Agents(api)
        log = open(cp.dir / "scheduler.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen([sys.executable, "-m", "externalip", "scheduler",
                                 f"--kubeconfig={kubeconfig}", "--metrics-addr=",
                                 "--log-level=warning"], stdout=log, stderr=subprocess.STDOUT)
        try:
            time.sleep(2)
            watch = ServiceWatch(api, SVC_NS)
            before, own_before = api.metrics(), api.own.copy()
            names = [f"s{i:05}" for i in range(count)]
            start = time.monotonic()

            def create(name: str) -> None:
                api.create(f"/api/v1/namespaces/{SVC_NS}/services", {
                    "apiVersion": "v1", "kind": "Service",
                    "metadata": {"name": name, "namespace": SVC_NS},
                    "spec": {"type": "LoadBalancer", "ipFamilies": ["IPv6"],
                             "allocateLoadBalancerNodePorts": False,  # 10,000 > NodePorts
                             "ports": [{"port": 80}]}})
            with ThreadPoolExecutor(16) as pool:
                list(pool.map(create, names))
            created = time.monotonic() - start
            ok = watch.wait(names, timeout=max(120, count / 5))
            done = max(t for t, _ in watch.got_ip.values()) - start if ok else float("nan")
            time.sleep(3)
            requests = api.others_requests(before, own_before)
            writes = {k: v for k, v in requests.items()
                      if k[0] in ("POST", "PUT", "PATCH", "DELETE")
                      and not k[1].startswith("leases")}
            rss, cpu = rss_cpu(proc.pid)
            per = sum(writes.values()) / count
            print(f"{count} LoadBalancer Services: created in {created:.1f}s, all had an IP "
                  f"{done:.1f}s after the first create (all allocated: {ok})")
            print(f"  scheduler writes per Service: {per:.2f}  ({dict(writes)})")
            print(f"  scheduler RSS {rss:.0f} MiB, CPU {cpu:.1f}s in total")
            watch.close()
            # failover detection: stop renewing one node, time until its claims moved
            detect: list[float] = []
            for round_ in range(5 if count <= 1000 else 2):
                node = NODES[round_ % len(NODES)]
                agents.alive.discard(node)
                last = agents.last_renew[node]
                while True:
                    claims = api.request("GET", "/apis/ipcontroller.ext/v1/ipclaims?"
                                         f"labelSelector=ipnode%3D{node}&limit=1")
                    if not claims["items"]:
                        detect.append(time.monotonic() - last)
                        break
                    time.sleep(0.05)
                agents.alive.add(node)
                agents.renew()
                time.sleep(3)
            print(f"  failover (last renewal -> all claims of the node moved, lease "
                  f"{LEASE_S}s): {summary(detect)}; p99 {p99(detect):.2f}s")
        finally:
            agents.stop.set()
            proc.terminate()
            proc.wait(timeout=20)
            log.close()


if __name__ == "__main__":
    # SIGTERM unwinds like Ctrl-C, so the control plane and scheduler are stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    for n in [int(a) for a in sys.argv[1:]] or [1000, 10000]:
        run(n)
