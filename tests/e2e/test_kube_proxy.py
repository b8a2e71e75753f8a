"""LoadBalancer and spec.externalIPs Services reach a pod through kube-proxy,
in both of its modes that this kernel supports (nftables, the lab's default,
and iptables); the answer names the pod that served it."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from externalip_lab.lab import Lab
from externalip_lab.topology import leftover_namespaces
from tests.e2e.conftest import APP, NS, service, wait_ingress, wait_unreachable
from tests.helpers import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.netns]


@pytest.fixture(scope="module")
def iptables_lab() -> Iterator[Lab]:
    lab = Lab(nodes=2, proxy_mode="iptables", apps=((NS, APP),))
    try:
        lab.start()
        yield lab
    finally:
        lab.stop()
        assert leftover_namespaces(lab.prefix) == []


def rules(lab: Lab, node: str) -> str:
    command = ["nft", "list", "ruleset"] if lab.proxy_mode == "nftables" else ["iptables-save"]
    return subprocess.run(["ip", "netns", "exec", lab.topology.node_ns(node), *command],
                          capture_output=True, text=True, check=True).stdout


def check_answered_by_a_pod_through_its_holder(lab: Lab, ip: str) -> None:
    answer = lab.wait_answer(ip)
    assert answer.pod == f"{APP}-{answer.node}"  # a pod of the Service answered
    # one holder once settled (a node restored by an earlier test may still be
    # dropping an address that moved away from it)
    wait_for(lambda: lab.holders(ip) == [answer.via], within=60,
             what=f"{ip} held by {answer.via} only")
    assert ip in rules(lab, answer.via)  # kube-proxy, in this mode, trapped it


def check_reachable_through_kube_proxy(lab: Lab, external_ip: str) -> None:
    assert lab.cp is not None
    lab.cp.apply(service(f"lb-{lab.proxy_mode}"))
    lab.cp.apply(service(f"ext-{lab.proxy_mode}", lb=False, external_ips=[external_ip]))
    (lb_ip,) = wait_ingress(lab, f"lb-{lab.proxy_mode}")
    for ip in (lb_ip, external_ip):
        check_answered_by_a_pod_through_its_holder(lab, ip)
    lab.cp.kubectl("delete", "service", f"lb-{lab.proxy_mode}", f"ext-{lab.proxy_mode}",
                   "-n", NS)
    wait_unreachable(lab, external_ip)


def test_nftables_mode(lab: Lab) -> None:
    assert lab.proxy_mode == "nftables"
    check_reachable_through_kube_proxy(lab, "192.0.2.170")


def test_iptables_mode(iptables_lab: Lab) -> None:
    check_reachable_through_kube_proxy(iptables_lab, "192.0.2.171")
