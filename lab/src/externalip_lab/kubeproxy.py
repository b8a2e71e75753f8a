"""kube-proxy on each lab node, as its DaemonSet pod runs it on a real node:
in the node's network namespace (hostNetwork), under the `kube-proxy`
service account bound to the API server's built-in `system:node-proxier`
role (what kubeadm binds), talking to the API through the node's proxy.

The lab's pods and Service ClusterIPs come from RFC 2544 and documentation
ranges; kube-proxy is told the pod range so it masquerades traffic from
outside it (external clients on Services with externalTrafficPolicy Cluster).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from externalip_lab.controlplane import ControlPlane
from externalip_lab.pods import POD_CIDR4, POD_CIDR6

MODES = ("nftables", "iptables")
NAMESPACE, ACCOUNT = "kube-system", "kube-proxy"


def install_rbac(cp: ControlPlane) -> None:
    cp.apply(yaml.safe_dump({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "externalip-lab:kube-proxy"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "system:node-proxier"},
        "subjects": [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": NAMESPACE}]}))


def kubeconfig(cp: ControlPlane, server: str) -> Path:
    return cp.service_account_kubeconfig(NAMESPACE, ACCOUNT, server=server)


def argv(cp: ControlPlane, kubeconfig: Path, node: str, mode: str) -> list[str]:
    if mode not in MODES:
        raise ValueError(f"proxy mode {mode!r} is not one of {', '.join(MODES)} "
                         "(ipvs needs the ip_vs kernel module, which this machine lacks)")
    return [
        str(cp.bin.kube_proxy), f"--kubeconfig={kubeconfig}", f"--hostname-override={node}",
        f"--proxy-mode={mode}", f"--cluster-cidr={POD_CIDR4},{POD_CIDR6}",
        "--detect-local-mode=ClusterCIDR",
        # conntrack limits and timeouts are machine-wide: leave them as they are
        "--conntrack-max-per-core=0", "--conntrack-tcp-timeout-established=0",
        "--conntrack-tcp-timeout-close-wait=0",
        "--oom-score-adj=0",  # a lab process: no claim to survive the OOM killer
        "--v=2",
    ]
