"""Start time of the whole lab with its data plane (control plane, N nodes
each with kube-proxy, a pod and the agent, two schedulers), until a
LoadBalancer Service created right after answers the client from a pod
through kube-proxy; median over several runs. Binaries must be built.

    .venv/bin/python bench/lab_start.py [runs] [nodes] [nftables|iptables]
"""

from __future__ import annotations

import signal
import sys
import time

from _common import summary

from externalip_lab.cli import show_service
from externalip_lab.lab import Lab


def main(runs: int, nodes: int, mode: str) -> None:
    up, served = [], []
    for _ in range(runs):
        start = time.monotonic()
        with Lab(nodes=nodes, proxy_mode=mode) as lab:
            up.append(time.monotonic() - start)
            show_service(lab)
            served.append(time.monotonic() - start)
    print(f"lab up ({nodes} nodes, kube-proxy {mode}): {summary(up)}")
    print(f"... until the demo Service answers from a pod: {summary(served)}")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: the lab is removed
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3, int(sys.argv[2]) if len(sys.argv) > 2
         else 3, sys.argv[3] if len(sys.argv) > 3 else "nftables")
