"""externalTrafficPolicy through kube-proxy, as the client sees it.

Local: the IP is held only on a node with a ready local endpoint, the pod
sees the client's own address, and when the last local endpoint goes unready
the IP moves to a node that has one. Cluster: the holder forwards to pods on
other nodes too (masqueraded to its own address)."""

from __future__ import annotations

import pytest

from externalip_lab.lab import Lab
from externalip_lab.pods import node_index
from externalip_lab.topology import CLIENT4, node_addresses
from tests.e2e.conftest import NS, service, wait_ingress
from tests.helpers import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.netns]


def test_local_policy_follows_the_ready_endpoint_and_keeps_the_client_source(
        healthy: Lab) -> None:
    lab = healthy
    assert lab.cp is not None
    lab.add_pod(NS, "local", "node3")
    lab.cp.apply(service("local", local=True, app="local"))
    (ip,) = wait_ingress(lab, "local")
    answer = lab.wait_answer(ip)
    assert (answer.pod, answer.node, answer.client) == ("local-node3", "node3", CLIENT4)
    assert lab.holders(ip) == ["node3"]
    # a second endpoint on node2, then node3's goes unready: the IP follows
    lab.add_pod(NS, "local", "node2")
    lab.set_pod_ready("local-node3", False)
    answer = lab.wait_answer(ip, not_from="node3")
    assert (answer.pod, answer.node, answer.client) == ("local-node2", "node2", CLIENT4)
    wait_for(lambda: lab.holders(ip) == ["node2"], within=60, what="held on node2 only")
    for _ in range(5):  # and the client keeps getting answers there
        again = lab.client_answer(ip)
        assert again is not None and again.pod == "local-node2"
    lab.cp.kubectl("delete", "service", "local", "-n", NS)


def test_cluster_policy_forwards_to_pods_on_other_nodes(lab: Lab) -> None:
    assert lab.cp is not None
    lab.cp.apply(service("cluster"))
    (ip,) = wait_ingress(lab, "cluster")
    holder = lab.wait_settled(ip)
    answers = [lab.client_answer(ip) for _ in range(30)]
    assert all(a is not None and a.via == holder for a in answers)
    remote = {a.node for a in answers if a is not None and a.node != holder}
    assert remote, f"30 answers, all from {holder}'s own pod"
    # a pod on another node saw the holder's node address: kube-proxy masqueraded
    other = next(a for a in answers if a is not None and a.node != holder)
    assert other.client == node_addresses(node_index(holder))[0]
    lab.cp.kubectl("delete", "service", "cluster", "-n", NS)
