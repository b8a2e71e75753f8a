"""MetalLB (L2 mode) on the lab, to measure externalip against it side by side
on the same namespaces and the same kube-apiserver.

What a real cluster gives MetalLB and the lab does not, written here by hand:
- its CRDs (config/crd/bases: no conversion webhook, which cannot run without
  pods) and its RBAC and namespace from config/manifests/metallb-native.yaml;
- a Pod object per speaker, bound to its node, with status.podIP = the node's
  IP: the speakers find each other for memberlist (fast dead-node detection)
  by listing these pods, and each speaker reads its own pod at start;
- EndpointSlices: the lab writes them for its pods (MetalLB announces a
  Service only if it has a ready endpoint).
The data plane is the lab's own: MetalLB only answers ARP for a VIP, and
kube-proxy on the node (nftables or iptables mode) DNATs packets to it in
prerouting, so the node needs no address or route for the VIP.

The controller runs in the root namespace (it only talks to the API); each
speaker runs in its node namespace through `ip netns exec`, with a kubeconfig
for the in-namespace API proxy and memberlist bound to the node IP, as the
DaemonSet's hostNetwork pod would. Memberlist runs unencrypted (no secret: the
controller creates one only for an existing Deployment).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import yaml

from externalip_lab.controlplane.binaries import REPO_ROOT
from externalip_lab.controlplane.server import free_port
from externalip_lab.lab import PROXY_PORT, Lab, progress
from externalip_lab.topology import POOL4, node_addresses

NAMESPACE = "metallb-system"
BUILD_SCRIPT = REPO_ROOT / "tools" / "build-metallb.sh"
SPEAKER_LABELS = {"app": "metallb", "component": "speaker"}
RBAC_KINDS = {"Namespace", "ServiceAccount", "Role", "ClusterRole", "RoleBinding",
              "ClusterRoleBinding"}


def build() -> tuple[Path, Path]:
    """(binaries directory, MetalLB module source directory), building if needed."""
    out = subprocess.run(["bash", str(BUILD_SCRIPT)], stdout=subprocess.PIPE, text=True,
                         check=True).stdout.strip().splitlines()
    return Path(out[-2]), Path(out[-1])


def load_balancer(name: str, namespace: str, app: str | None = None,
                  local: bool = False) -> dict[str, Any]:
    """A LoadBalancer Service selecting the lab pods of `app` (none: a Service
    without endpoints, which the lab writes no EndpointSlice for)."""
    spec: dict[str, Any] = {
        "type": "LoadBalancer",
        # no NodePorts: 30000-32767 holds only 2,768 of them (a 10,000-Service
        # benchmark ran out), and nothing here reaches a Service through one
        "allocateLoadBalancerNodePorts": False,
        "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}
    if app:
        spec["selector"] = {"app": app}
    if local:
        spec["externalTrafficPolicy"] = "Local"
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


class MetalLB:
    """MetalLB on a running `Lab(mode="none")`; `stop()` undoes everything it did."""

    def __init__(self, lab: Lab, addresses: list[str] | None = None) -> None:
        self.lab = lab
        self.addresses = addresses or [f"{POOL4[0]}-{POOL4[1]}"]
        self.bin, self.source = build()
        self.speaker_kubeconfig: Path | None = None

    @property
    def cp(self) -> Any:
        assert self.lab.cp is not None
        return self.lab.cp

    def start(self) -> MetalLB:
        progress("MetalLB: CRDs, namespace, RBAC, address pool, L2 advertisement")
        self.cp.install_crds(self.source / "config" / "crd" / "bases")
        manifest = self.source / "config" / "manifests" / "metallb-native.yaml"
        rbac = [d for d in yaml.safe_load_all(manifest.read_text())
                if d and d.get("kind") in RBAC_KINDS]
        self.cp.apply(yaml.safe_dump_all(rbac))
        self.set_pool(self.addresses)
        self.cp.apply(yaml.safe_dump({
            "apiVersion": "metallb.io/v1beta1", "kind": "L2Advertisement",
            "metadata": {"name": "lab", "namespace": NAMESPACE}}))
        controller_cfg = self.cp.service_account_kubeconfig(NAMESPACE, "controller")
        self.speaker_kubeconfig = self.cp.service_account_kubeconfig(
            NAMESPACE, "speaker", server=f"https://127.0.0.1:{PROXY_PORT}")
        self._spawn("metallb-controller", None, controller_cfg, [
            str(self.bin / "controller"), f"--namespace={NAMESPACE}",
            "--webhook-mode=disabled", f"--port={free_port()}", "--log-level=info"])
        for i, node in enumerate(self.lab.node_names, start=1):
            self._speaker_pod(node, node_addresses(i)[0])
            self.start_speaker(node)
        progress(f"MetalLB: controller and {len(self.lab.node_names)} speakers running")
        return self

    def set_pool(self, addresses: list[str]) -> None:
        self.cp.apply(yaml.safe_dump({
            "apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
            "metadata": {"name": "lab", "namespace": NAMESPACE},
            "spec": {"addresses": addresses}}))

    def start_speaker(self, node: str) -> None:
        assert self.speaker_kubeconfig is not None
        i = self.lab.node_names.index(node) + 1
        self._spawn(f"metallb-speaker-{node}", node, self.speaker_kubeconfig, [
            str(self.bin / "speaker"), f"--namespace={NAMESPACE}", f"--node-name={node}",
            f"--pod-name=speaker-{node}", "--host=127.0.0.1", "--port=7472",
            f"--ml-bindaddr={node_addresses(i)[0]}",
            "--ml-labels=" + ",".join(f"{k}={v}" for k, v in SPEAKER_LABELS.items()),
            "--log-level=info"])

    def kill_speaker(self, node: str) -> None:
        self.lab.stop_process(f"metallb-speaker-{node}", signal.SIGKILL)

    def speaker_pid(self, node: str) -> int:
        return self.lab.procs[f"metallb-speaker-{node}"].popen.pid

    def controller_pid(self) -> int:
        return self.lab.procs["metallb-controller"].popen.pid

    def stop(self) -> None:
        """Stop its processes; API objects stay (namespaces never finish
        deleting without a controller-manager)."""
        for name in [n for n in self.lab.procs if n.startswith("metallb-")]:
            self.lab.stop_process(name)
        progress("MetalLB: stopped")

    # --- what the cluster would have provided ------------------------------
    def _spawn(self, name: str, node: str | None, kubeconfig: Path, argv: list[str]) -> None:
        # controller-runtime reads KUBECONFIG; no in-cluster config exists here.
        env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
        if node is not None:
            argv = ["ip", "netns", "exec", self.lab.topology.node_ns(node), *argv]
        self.lab.spawn_process(name, argv, env)

    def _speaker_pod(self, node: str, address: str) -> None:
        name = f"speaker-{node}"
        self.cp.apply(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NAMESPACE, "labels": SPEAKER_LABELS},
            "spec": {"nodeName": node, "hostNetwork": True, "serviceAccountName": "speaker",
                     "automountServiceAccountToken": False,
                     "containers": [{"name": "speaker", "image": "lab.invalid/speaker"}]}}))
        status = {"phase": "Running", "hostIP": address, "podIP": address,
                  "podIPs": [{"ip": address}], "hostIPs": [{"ip": address}]}
        self.cp.kubectl("patch", "pod", name, "-n", NAMESPACE, "--subresource=status",
                        "--type=merge", "-p", json.dumps({"status": status}))
