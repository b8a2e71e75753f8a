"""The lab's plumbing: namespaces on a bridge, the API proxy into a namespace
(cut and slowed), the routed pod network behind the nodes with the pod
server, and the client-side prober."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from externalip_lab.apiproxy import ApiProxy
from externalip_lab.controlplane import ControlPlane
from externalip_lab.pods import Answer, attach_pod, wire_node
from externalip_lab.topology import Topology, leftover_namespaces, node_addresses
from tests.helpers import wait_for

# kubectl words a client-side timeout either way, depending on where it struck
TIMED_OUT = re.compile(r"deadline exceeded|Timeout exceeded")

pytestmark = [pytest.mark.integration, pytest.mark.netns]


def in_ns(netns: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", netns, *argv], capture_output=True,
                          text=True, timeout=30, check=False)


@pytest.fixture
def topo(unique: str):  # type: ignore[no-untyped-def]
    t = Topology(prefix=unique, nodes=2)
    try:
        t.create()
        yield t
    finally:
        t.destroy()
        assert leftover_namespaces(unique) == []


def test_nodes_and_client_share_one_segment(topo: Topology) -> None:
    node2_v4, node2_v6 = node_addresses(2)
    assert in_ns(topo.node_ns("node1"), "ping", "-c1", "-W2", node2_v4).returncode == 0
    assert in_ns(topo.client, "ping", "-c1", "-W2", node2_v6).returncode == 0
    topo.link_down("node2")
    assert in_ns(topo.client, "ping", "-c1", "-W1", node2_v4).returncode != 0


def test_api_proxy_reaches_the_control_plane_from_a_namespace_and_partitions(
        control_plane: ControlPlane, topo: Topology) -> None:
    ns = topo.node_ns("node1")
    kubeconfig = control_plane.service_account_kubeconfig(
        "externalip", "lab-probe", server="https://127.0.0.1:6443")
    kubectl = [str(control_plane.bin.kubectl), f"--kubeconfig={kubeconfig}",
               "--request-timeout=3s"]
    with ApiProxy(ns, control_plane.apiserver_port):
        who = in_ns(ns, *kubectl, "auth", "whoami", "-o", "json")
        assert who.returncode == 0, who.stderr
        assert json.loads(who.stdout)["status"]["userInfo"]["username"].endswith(":lab-probe")
    cut = in_ns(ns, *kubectl, "auth", "whoami")
    assert cut.returncode != 0  # proxy stopped: the node is partitioned from the API


def test_a_slow_api_proxy_fails_clients_with_a_shorter_timeout(control_plane: ControlPlane,
                                                                topo: Topology) -> None:
    ns = topo.node_ns("node1")
    kubeconfig = control_plane.service_account_kubeconfig(
        "externalip", "lab-probe", server="https://127.0.0.1:6443")
    kubectl = [str(control_plane.bin.kubectl), f"--kubeconfig={kubeconfig}",
               "--request-timeout=2s", "auth", "whoami"]
    with ApiProxy(ns, control_plane.apiserver_port) as proxy:
        proxy.latency = 20.0
        slow = in_ns(ns, *kubectl)
        assert slow.returncode != 0 and TIMED_OUT.search(slow.stderr), slow.stderr
        proxy.latency = 0.0
        assert in_ns(ns, *kubectl).returncode == 0


def test_pods_are_routed_through_their_node_and_answer_with_what_they_saw(
        topo: Topology) -> None:
    for i, node in enumerate(topo.node_names(), start=1):
        wire_node(topo.node_ns(node), i, 2)
    pod_ns = f"{topo.prefix}-node2-pod1"
    topo.extra.append(pod_ns)  # destroy() removes it
    v4, v6 = attach_pod(topo.node_ns("node2"), pod_ns, 2, 1)
    server = subprocess.Popen(["ip", "netns", "exec", pod_ns, sys.executable, "-m",
                               "externalip_lab.podserver", "web-node2", "node2"])
    node1 = topo.node_ns("node1")
    probe = subprocess.Popen(["ip", "netns", "exec", node1, sys.executable, "-m",
                              "externalip_lab.probe", v4], stdout=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: in_ns(node1, "curl", "-s", "-m1", f"http://{v4}/").stdout != "",
                 within=10, what="pod answering")
        # routed node1 -> node2 -> pod: the pod sees node1's own address
        answer = Answer.parse(in_ns(node1, "curl", "-s", "-m1", f"http://{v4}/").stdout)
        assert answer == Answer("web-node2", "node2", node_addresses(1)[0])
        answer6 = Answer.parse(in_ns(node1, "curl", "-s", "-m1", f"http://[{v6}]/").stdout)
        assert answer6 == Answer("web-node2", "node2", node_addresses(1)[1])
        assert probe.stdout is not None
        seen = json.loads(probe.stdout.readline())
        while seen["node"] != "node1":
            seen = json.loads(probe.stdout.readline())
        assert (seen["ip"], seen["pod"]) == (v4, "web-node2")
    finally:
        for proc in (probe, server):
            proc.kill()
            proc.wait()
