"""externalTrafficPolicy: Local — the IP is held only on a node with a ready
local endpoint (EndpointSlices are written by hand: no controller-manager)."""

from __future__ import annotations

import pytest
import yaml

from externalip_lab.lab import Lab
from tests.e2e.conftest import NS, service, wait_ingress, wait_reachable
from tests.helpers import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.netns]


def endpoint_slice(name: str, node: str, ready: bool = True) -> str:
    return yaml.safe_dump({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": f"{name}-lab", "namespace": NS,
                     "labels": {"kubernetes.io/service-name": name}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
        "endpoints": [{"addresses": ["10.244.0.10"], "nodeName": node,
                       "conditions": {"ready": ready}}]})


def test_local_policy_follows_the_endpoint(healthy: Lab) -> None:
    lab = healthy
    assert lab.cp is not None
    lab.cp.apply(endpoint_slice("local", "node3"))
    lab.cp.apply(service("local", local=True))
    (ip,) = wait_ingress(lab, "local")
    assert wait_reachable(lab, ip) == "node3"
    assert lab.holders(ip) == ["node3"]
    # the endpoint moves to node2: so does the IP
    lab.cp.apply(endpoint_slice("local", "node2"))
    assert wait_reachable(lab, ip, not_from="node3") == "node2"
    wait_for(lambda: lab.holders(ip) == ["node2"], within=60, what="held on node2 only")
    lab.cp.kubectl("delete", "service", "local", "-n", NS)
    lab.cp.kubectl("delete", "endpointslice", "local-lab", "-n", NS)
