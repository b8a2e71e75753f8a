"""The lab's pure pieces: the EndpointSlices it writes for its pods, what a
pod's answer tells about the path, and which lab a command acts on."""

from __future__ import annotations

from typing import Any

import pytest

from externalip_lab.endpoints import slices_for
from externalip_lab.labstate import NoSuchLabError, select
from externalip_lab.pods import Answer, node_of_address, pod_addresses


def pod(name: str, node: str, ready: bool, *, app: str = "web", ns: str = "e2e",
        ips: tuple[str, ...] = ("198.18.1.2", "2001:db8:18:1::2")) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns, "labels": {"app": app}},
            "spec": {"nodeName": node},
            "status": {"podIPs": [{"ip": i} for i in ips],
                       "conditions": [{"type": "Ready", "status": str(ready)}]}}


def service(families: list[str], selector: dict[str, str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"ipFamilies": families,
                            "ports": [{"name": "http", "port": 8080, "targetPort": 80}]}
    if selector is not None:
        spec["selector"] = selector
    return {"metadata": {"name": "svc", "namespace": "e2e"}, "spec": spec}


def test_one_slice_per_family_with_the_selected_pods_and_their_readiness() -> None:
    pods = [pod("web-node1", "node1", True), pod("web-node2", "node2", False),
            pod("other", "node1", True, app="other"), pod("web-x", "node1", True, ns="x")]
    slices = slices_for(service(["IPv4", "IPv6"], {"app": "web"}), pods)
    assert [s["addressType"] for s in slices] == ["IPv4", "IPv6"]
    v4 = slices[0]
    assert v4["metadata"]["labels"]["kubernetes.io/service-name"] == "svc"
    assert v4["ports"] == [{"name": "http", "protocol": "TCP", "port": 80}]
    assert [(e["targetRef"]["name"], e["nodeName"], e["conditions"]["ready"])
            for e in v4["endpoints"]] == [("web-node1", "node1", True),
                                          ("web-node2", "node2", False)]
    assert slices[1]["endpoints"][0]["addresses"] == ["2001:db8:18:1::2"]


def test_services_without_a_selector_are_left_to_their_owner() -> None:
    assert slices_for(service(["IPv4"]), [pod("web-node1", "node1", True)]) == []


def test_the_answer_names_the_node_that_took_the_request_in() -> None:
    local = Answer.parse("pod=web-node2 node=node2 client=192.0.2.100\n")
    assert local is not None and local.via == "node2"  # client kept: the pod's node
    masqueraded = Answer.parse("pod=web-node2 node=node2 client=192.0.2.11")
    assert masqueraded is not None and masqueraded.via == "node1"
    own_pod = Answer.parse("pod=web-node3 node=node3 client=198.18.3.1")
    assert own_pod is not None and own_pod.via == "node3"
    assert Answer.parse("node1") is None  # anything but a lab pod's answer


@pytest.mark.parametrize(("address", "node"), [
    ("192.0.2.12", "node2"), ("2001:db8::c", "node2"), (pod_addresses(7, 0)[0], "node7"),
    (pod_addresses(12, 0)[1], "node12"), ("192.0.2.100", None), ("2001:db8::100", None),
    (pod_addresses(2, 3)[0], None)])
def test_node_of_address(address: str, node: str | None) -> None:
    assert node_of_address(address) == node


def test_a_command_acts_on_the_named_lab_the_only_one_or_all_when_asked() -> None:
    a, b = {"prefix": "eipla"}, {"prefix": "eiplb"}
    assert select(None, labs=[a]) == [a]
    assert select("eiplb", labs=[a, b]) == [b]
    assert select(None, every=True, labs=[a, b]) == [a, b]
    with pytest.raises(NoSuchLabError, match=r"2 labs are running.*--prefix"):
        select(None, labs=[a, b])
    with pytest.raises(NoSuchLabError, match="no lab with prefix 'x'"):
        select("x", labs=[a])
    with pytest.raises(NoSuchLabError, match="no lab running"):
        select(None, labs=[])
