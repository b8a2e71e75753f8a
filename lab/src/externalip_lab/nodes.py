"""Kubernetes Node objects for the lab's namespaces.

No kubelet runs in the lab, so the lab writes what a kubelet would: a Node
with the seed's `ipcontroller=` label and a Ready condition, which the
scheduler reads to decide where IPs may go.
"""

from __future__ import annotations

import json

import yaml

from externalip.kube.times import now_rfc3339
from externalip_lab.controlplane import ControlPlane


def labels(name: str) -> dict[str, str]:
    return {"ipcontroller": "", "kubernetes.io/hostname": name}


def create(cp: ControlPlane, name: str, *addresses: str) -> None:
    """A ready Node with its InternalIPs (IPv4 first, then IPv6, as a
    dual-stack kubelet reports them: kube-proxy takes its node IPs from here)."""
    cp.apply(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": labels(name)},
    }))
    set_ready(cp, name, True, *addresses)


def set_ready(cp: ControlPlane, name: str, ready: bool, *addresses: str) -> None:
    status: dict[str, object] = {"conditions": [{
        "type": "Ready", "status": "True" if ready else "False",
        "reason": "KubeletReady" if ready else "LabMarkedNotReady",
        "message": "set by externalip lab", "lastHeartbeatTime": now_rfc3339(),
        "lastTransitionTime": now_rfc3339()}]}
    if addresses:
        status["addresses"] = [*({"type": "InternalIP", "address": a} for a in addresses),
                               {"type": "Hostname", "address": name}]
    cp.kubectl("patch", "node", name, "--subresource=status", "--type=merge",
               "-p", json.dumps({"status": status}))
