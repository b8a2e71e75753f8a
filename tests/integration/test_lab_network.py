"""The lab's plumbing: namespaces on a bridge, the API proxy into a namespace,
the stand-in backend, and the client-side prober."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from externalip_lab.apiproxy import ApiProxy
from externalip_lab.controlplane import ControlPlane
from externalip_lab.topology import CLIENT4, Topology, leftover_namespaces, node_addresses
from tests.helpers import wait_for

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


def test_backend_answers_with_the_node_name_and_the_probe_reports_it(topo: Topology) -> None:
    ns = topo.node_ns("node1")
    backend = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-m",
                                "externalip_lab.backend", "node1"])
    probe = subprocess.Popen(["ip", "netns", "exec", topo.client, sys.executable, "-m",
                              "externalip_lab.probe", node_addresses(1)[0]],
                             stdout=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: in_ns(topo.client, "curl", "-s", "-m1",
                               f"http://{node_addresses(1)[0]}/").stdout == "node1\n",
                 within=10, what="backend answering")
        v6 = in_ns(topo.client, "curl", "-s", "-m1", f"http://[{node_addresses(1)[1]}]/")
        assert v6.stdout == "node1\n"
        assert probe.stdout is not None
        seen = [json.loads(probe.stdout.readline()) for _ in range(1)]
        while seen[-1]["node"] != "node1":
            seen.append(json.loads(probe.stdout.readline()))
        assert seen[-1]["ip"] == node_addresses(1)[0]
        assert CLIENT4 not in seen[-1]["ip"]
    finally:
        for proc in (probe, backend):
            proc.kill()
            proc.wait()
