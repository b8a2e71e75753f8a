"""The image in the lab as the chart runs it: `make image` (cached), the lab
from the image (helm install, pods with podman), then rolling upgrades to a
re-tagged image and rollbacks while a client polls three Services: requests
lost, addresses that changed node, the longest gap the client saw.

    .venv/bin/python bench/image_upgrade.py [cycles] [nodes]
"""

from __future__ import annotations

import signal
import sys
import time

from _common import summary

from externalip_lab import podman
from externalip_lab.cli import wait_for_ingress
from externalip_lab.lab import Lab
from externalip_lab.poller import Poller

NS = "demo"


def main(cycles: int, nodes: int) -> None:
    start = time.monotonic()
    image = podman.build_image()
    print(f"make image (cached): {time.monotonic() - start:.1f}s")
    start = time.monotonic()
    with Lab(nodes=nodes, from_image=image, apps=((NS, "nginx"),)) as lab:
        assert lab.cp is not None and lab.image is not None
        print(f"lab up from the image ({nodes} nodes): {time.monotonic() - start:.1f}s")
        ips = []
        for i in range(3):
            lab.cp.apply(service(f"roll-{i}"))
            ips.append(wait_for_ingress(lab, f"roll-{i}"))
            lab.wait_reachable(ips[-1], within=30)
        rolled = image.rsplit(":", 1)[0] + ":rolled"
        podman.tag(image, rolled)
        gaps: dict[str, list[float]] = {"upgrade": [], "rollback": []}
        for _ in range(cycles):
            for kind, target in (("upgrade", rolled), ("rollback", None)):
                began = time.monotonic()
                with Poller(lab, ips) as poller:
                    time.sleep(1.0)
                    replaced = lab.image.roll(target)
                    time.sleep(2.0)
                print(f"{kind}: {' '.join(replaced)} in {time.monotonic() - began - 3:.1f}s; "
                      f"{poller.report()}")
                gaps[kind].append(poller.longest_gap)
        for kind, values in gaps.items():
            print(f"{kind}: longest gap {summary(values)}")


def service(name: str) -> str:
    return (f"apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {NS}}}\n"
            "spec: {type: LoadBalancer, selector: {app: nginx}, ports: [{port: 80}]}\n")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: the lab is removed
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2, int(sys.argv[2]) if len(sys.argv) > 2
         else 3)
