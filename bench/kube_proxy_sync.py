"""Where the time to reachable goes with kube-proxy in the path: for a
LoadBalancer Service created on a lab (2 nodes, our programs, a pod per
node), the seconds until its IP is in the Service's status, until a node
holds the address, until kube-proxy (nftables) on a node has the rule for
the IP, and until the client's first answer from a pod. Extra arguments go
to kube-proxy, e.g. --iptables-min-sync-period=0 (nftables mode shares it).

    .venv/bin/python bench/kube_proxy_sync.py [runs] [kube-proxy args...]
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable

from _common import summary

from externalip_lab.lab import Lab
from externalip_lab.labapi import LabApi

NS, APP = "demo", "nginx"


def first(predicate: Callable[[], bool], poll: float = 0.005) -> float:
    """The time predicate() first held."""
    while not predicate():
        time.sleep(poll)
    return time.monotonic()


def one(lab: Lab, api: LabApi, name: str) -> tuple[float, float, float, float]:
    path = f"/api/v1/namespaces/{NS}/services"
    found: list[str] = []

    def has_ip() -> bool:
        svc = api.request("GET", f"{path}/{name}")
        found[:] = [i["ip"] for i in svc.get("status", {}).get("loadBalancer", {})
                    .get("ingress") or []]
        return bool(found)

    def has_rule() -> bool:
        return any(f"{found[0]} . tcp . 80 : goto external" in subprocess.run(
            ["ip", "netns", "exec", lab.topology.node_ns(n), "nft", "list", "map", "ip",
             "kube-proxy", "service-ips"], capture_output=True, text=True, check=False).stdout
            .replace("\t", " ") for n in lab.node_names)

    t0 = time.monotonic()
    api.request("POST", path, {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": NS},
        "spec": {"type": "LoadBalancer", "selector": {"app": APP},
                 "ports": [{"port": 80, "targetPort": 80}]}})
    status = first(has_ip)
    held = first(lambda: bool(lab.holders(found[0])))
    rule = first(has_rule)
    answer = first(lambda: lab.client_answer(found[0], timeout=0.3) is not None)
    api.request("DELETE", f"{path}/{name}")
    return status - t0, held - t0, rule - t0, answer - t0


def main(runs: int, kube_proxy_args: tuple[str, ...]) -> None:
    rows = []
    with Lab(nodes=2, apps=((NS, APP),), kube_proxy_args=kube_proxy_args) as lab:
        assert lab.cp is not None
        api = LabApi(lab.cp)
        for i in range(runs):
            rows.append(one(lab, api, f"sync-{i}"))
            time.sleep(2)  # the address released before the next Service takes it
    print(f"kube-proxy {' '.join(kube_proxy_args) or 'defaults'}, {runs} Services:")
    for k, what in enumerate(("IP in status", "address held by a node", "kube-proxy rule",
                              "client's first answer")):
        print(f"  {what}: {summary([r[k] for r in rows])}")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: the lab is removed
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 6, tuple(sys.argv[2:]))
