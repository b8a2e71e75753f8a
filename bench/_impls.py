"""The two implementations the side-by-side benchmark drives on one lab, behind
one small interface (imported by bench scripts; running this file does nothing).

Node death is the same for both: the node's link goes down, its program
(our agent, MetalLB's speaker) and its kube-proxy are SIGKILLed and its API
proxy stops.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from typing import Any

import yaml

from externalip_lab.lab import POOL_NAME, Lab
from externalip_lab.metallb import MetalLB, load_balancer

# Both allocate from the same ranges. REACH covers 100 Services at once on the
# lab's L2 segment; SCALE (in RFC 2544's benchmarking range, never routed, apart
# from the lab's pods in 198.18.0.0/16 and ClusterIPs in 198.19.0.0/18) holds
# 10,000 addresses, used only by Services without endpoints.
REACH_RANGE = ("192.0.2.128", "192.0.2.250")
SCALE_CIDR, SCALE_RANGE = "198.19.128.0/17", ("198.19.128.1", "198.19.255.254")
SCALE_POOL = "scale"
# The app of the lab's pod on every node; Services of the scale pool select
# nothing (no endpoints, no EndpointSlice).
APP = "web"


class Impl:
    name = ""
    program = ""  # the per-node program's process-name prefix in lab.procs

    def __init__(self, lab: Lab) -> None:
        self.lab = lab

    def start(self) -> None: ...
    def stop(self) -> None: ...

    def service(self, name: str, namespace: str, pool: str = "",
                local: bool = False) -> dict[str, Any]:
        """The same Service for both; the lab writes its EndpointSlice."""
        return load_balancer(name, namespace, None if pool == SCALE_POOL else APP, local)

    def kill_program(self, node: str, sig: int = signal.SIGKILL) -> None:
        self.lab.stop_process(f"{self.program}-{node}", sig)

    def start_program(self, node: str) -> None: ...

    def kill_node(self, node: str) -> None:
        self.kill_program(node)
        self.lab.kill_node(node)  # link down, kube-proxy killed, API cut

    def restore_node(self, node: str) -> None:
        self.lab.restore_node(node)
        if f"{self.program}-{node}" not in self.lab.procs:
            self.start_program(node)

    def allocator_pids(self) -> list[int]:
        return []


class MetalLBImpl(Impl):
    name = "MetalLB v0.15.2"
    program = "metallb-speaker"

    def __init__(self, lab: Lab) -> None:
        super().__init__(lab)
        self.m = MetalLB(lab, [f"{REACH_RANGE[0]}-{REACH_RANGE[1]}"])

    def start(self) -> None:
        self.m.start()
        assert self.lab.cp is not None
        self.lab.cp.apply(yaml.safe_dump({
            "apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
            "metadata": {"name": SCALE_POOL, "namespace": "metallb-system"},
            "spec": {"addresses": [SCALE_CIDR], "autoAssign": False}}))

    def stop(self) -> None:
        self.m.stop()

    def service(self, name: str, namespace: str, pool: str = "",
                local: bool = False) -> dict[str, Any]:
        svc = super().service(name, namespace, pool, local)
        if pool:
            svc["metadata"]["annotations"] = {"metallb.io/address-pool": pool}
        return svc

    def start_program(self, node: str) -> None:
        self.m.start_speaker(node)

    def allocator_pids(self) -> list[int]:
        return [self.m.controller_pid()]


class OursImpl(Impl):
    name = "externalip"
    program = "agent"

    def start(self) -> None:
        assert self.lab.cp is not None
        self.lab.mode = "claims"
        self.lab.cp.apply(yaml.safe_dump_all([
            {"apiVersion": "ipcontroller.ext/v1", "kind": "IpClaimPool",
             "metadata": {"name": POOL_NAME},
             "spec": {"cidr": "192.0.2.0/24", "ranges": [list(REACH_RANGE)]}},
            {"apiVersion": "ipcontroller.ext/v1", "kind": "IpClaimPool",
             "metadata": {"name": SCALE_POOL},
             "spec": {"cidr": SCALE_CIDR, "ranges": [list(SCALE_RANGE)],
                      "autoAssign": False}},
        ]))
        for node in self.lab.node_names:
            self.lab.start_agent(node)
        for i in range(1, self.lab.schedulers + 1):
            self.lab.start_scheduler(i)
        time.sleep(3)  # leader elected, agents' Leases written

    def stop(self) -> None:
        for name in [n for n in self.lab.procs if n.startswith(("agent-", "scheduler-"))]:
            self.lab.stop_process(name)
        self.lab.mode = "none"

    def service(self, name: str, namespace: str, pool: str = "",
                local: bool = False) -> dict[str, Any]:
        svc = super().service(name, namespace, pool, local)
        if pool:
            svc["metadata"]["annotations"] = {"externalip.io/pool": pool}
        return svc

    def start_program(self, node: str) -> None:
        self.lab.start_agent(node)

    def allocator_pids(self) -> list[int]:
        return [p.popen.pid for n, p in self.lab.procs.items() if n.startswith("scheduler-")]


def ours_available() -> bool:
    """Both our programs exist in this checkout (they landed late on day one)."""
    for program in ("agent", "scheduler"):
        result = subprocess.run([sys.executable, "-m", "externalip", program, "--help"],
                                capture_output=True, check=False)
        if result.returncode != 0:
            return False
    return True
