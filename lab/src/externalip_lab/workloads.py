"""The lab's pods: a network namespace each, behind its node, running the pod
server, and the Pod object a kubelet would report for it (status.podIPs and
the Ready condition), which the EndpointSlice writer turns into endpoints.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from externalip.kube.times import now_rfc3339
from externalip_lab.labapi import ApiError, LabApi, pod_path
from externalip_lab.pods import attach_pod, node_index
from externalip_lab.topology import Topology, node_addresses


@dataclass
class LabPod:
    name: str
    namespace: str
    app: str
    node: str
    netns: str
    ipv4: str
    ipv6: str


class Workloads:
    """Pods by name; `spawn(name, netns, argv)` runs a process under the lab's care."""

    def __init__(self, api: LabApi, topology: Topology,
                 spawn: Callable[[str, str, list[str]], None]) -> None:
        self.api, self.topology, self.spawn = api, topology, spawn
        self.pods: dict[str, LabPod] = {}
        self._namespaces: set[str] = set()

    def add(self, namespace: str, app: str, node: str, ready: bool = True) -> LabPod:
        """Create a pod of `app` on `node`: namespace, server, Pod object."""
        slot = 1 + sum(1 for p in self.pods.values() if p.node == node)
        name = f"{app}-{node}" if f"{app}-{node}" not in self.pods else f"{app}-{node}-{slot}"
        netns = f"{self.topology.prefix}-{node}-pod{slot}"
        self.topology.extra.append(netns)
        v4, v6 = attach_pod(self.topology.node_ns(node), netns, node_index(node), slot)
        pod = LabPod(name, namespace, app, node, netns, v4, v6)
        self.pods[name] = pod
        self.spawn(f"pod-{name}", netns,
                   [sys.executable, "-m", "externalip_lab.podserver", name, node])
        self._ensure_namespace(namespace)
        self.api.apply(pod_path(namespace, name), {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": {"app": app}},
            "spec": {"nodeName": node, "automountServiceAccountToken": False,
                     "containers": [{"name": "http", "image": "lab.invalid/podserver",
                                     "ports": [{"containerPort": 80}]}]}})
        host4, host6 = node_addresses(node_index(node))
        self.api.merge_status(pod_path(namespace, name), {
            "phase": "Running", "podIP": v4, "podIPs": [{"ip": v4}, {"ip": v6}],
            "hostIP": host4, "hostIPs": [{"ip": host4}, {"ip": host6}],
            "conditions": self._conditions(ready)})
        return pod

    def set_ready(self, name: str, ready: bool) -> LabPod:
        pod = self.pods.get(name)
        if pod is None:
            raise KeyError(f"no lab pod {name!r} (pods: {', '.join(sorted(self.pods))})")
        self.api.merge_status(pod_path(pod.namespace, name),
                              {"conditions": self._conditions(ready)})
        return pod

    def on_node(self, node: str) -> list[LabPod]:
        return [p for p in self.pods.values() if p.node == node]

    @staticmethod
    def _conditions(ready: bool) -> list[dict[str, Any]]:
        status = "True" if ready else "False"
        return [{"type": kind, "status": status, "lastTransitionTime": now_rfc3339()}
                for kind in ("Ready", "ContainersReady")]

    def _ensure_namespace(self, namespace: str) -> None:
        """The namespace and its `default` account: without a controller-manager
        nobody creates the account, and Pod admission requires it."""
        if namespace in self._namespaces:
            return
        for path, obj in (
                (f"/api/v1/namespaces/{namespace}",
                 {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}),
                (f"/api/v1/namespaces/{namespace}/serviceaccounts/default",
                 {"apiVersion": "v1", "kind": "ServiceAccount",
                  "metadata": {"name": "default", "namespace": namespace}})):
            try:
                self.api.apply(path, obj)
            except ApiError as exc:
                if exc.status != 409:
                    raise
        self._namespaces.add(namespace)
