"""Hostile and careless input to the scheduler (issue 12): against the real API
server, the scheduler as a process under its shipped service account."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from externalip.core.model import node_label
from externalip_lab.controlplane import ControlPlane
from tests.helpers import wait_for
from tests.integration.scheduler_harness import (
    FakeAgents,
    apply,
    claims,
    events,
    ingress,
    lb_service,
    pool,
    scheduler,
    wait_ingress,
)

pytestmark = pytest.mark.integration


def ext_service(ns: str, name: str, *ips: str, port: int = 80) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
            "spec": {"ports": [{"port": port}], "externalIPs": list(ips)}}


def warned(cp: ControlPlane, ns: str, name: str, reason: str) -> bool:
    return any(e.startswith(f"{reason}:") for e in events(cp, ns, name))


@pytest.fixture
def prod(clean: ControlPlane, unique: str) -> Iterator[str]:
    """A second namespace of this test's own (namespaces never finish deleting
    without a controller-manager: its Services are deleted instead)."""
    ns = f"{unique}-prod"
    clean.ensure_namespace(ns)
    yield ns
    clean.kubectl("delete", "services", "--all", "-n", ns, "--wait=false")


def test_special_and_node_addresses_get_a_warning_and_no_claim(
        clean: ControlPlane, agents: FakeAgents, unique: str, tmp_path: Path) -> None:
    """Items 2 and 6: a node's own addresses (Node status, IpNode inventory) and
    special addresses are never allocated nor claimed for a Service."""
    cp = clean
    cp.kubectl("patch", "node", "node-a", "--subresource=status", "--type=merge", "-p",
               json.dumps({"status": {"addresses": [
                   {"type": "InternalIP", "address": "192.0.2.11"},
                   {"type": "Hostname", "address": "node-a"}]}}))
    cp.apply(yaml.safe_dump({"apiVersion": "ipcontroller.ext/v1", "kind": "IpNode",
                             "metadata": {"name": "node-b"}, "spec": {}}))
    cp.kubectl("patch", "ipnode", "node-b", "--subresource=status", "--type=merge", "-p",
               json.dumps({"status": {"nodeAddresses": ["192.0.2.12"]}}))
    try:
        apply(cp, pool("p1", "192.0.2.0/24", [["192.0.2.10", "192.0.2.13"]]))
        with scheduler(cp, tmp_path):
            apply(cp, ext_service(unique, "steal-a", "192.0.2.11"),
                  ext_service(unique, "steal-b", "192.0.2.12", port=81),
                  ext_service(unique, "special", "239.1.2.3", "240.0.0.1", "0.1.2.3",
                              "255.255.255.255", port=82),
                  lb_service(unique, "req", annotations={"externalip.io/ips": "192.0.2.11"}),
                  lb_service(unique, "first"))
            assert wait_ingress(cp, unique, "first") == "192.0.2.10"
            apply(cp, lb_service(unique, "second"))
            assert wait_ingress(cp, unique, "second") == "192.0.2.13"  # .11, .12 skipped
            for name, reason in (("steal-a", "NodeAddress"), ("steal-b", "NodeAddress"),
                                 ("special", "SpecialAddress"), ("req", "NodeAddress")):
                wait_for(lambda n=name, r=reason: warned(cp, unique, n, r),
                         what=f"{reason} Warning on {name}")
            assert set(claims(cp)) == {"192-0-2-10-32", "192-0-2-13-32"}
            assert ingress(cp, unique, "req") == []
    finally:
        cp.kubectl("delete", "ipnode", "node-b", "--ignore-not-found")


def test_pool_namespaces_hold_for_named_pools_requests_and_sharing(
        clean: ControlPlane, agents: FakeAgents, unique: str, prod: str,
        tmp_path: Path) -> None:
    """Item 3, `namespaces`: the named pool, a requested address and a sharing
    key from another namespace all fail to reach prod's addresses."""
    cp = clean
    apply(cp, pool("prod-only", "198.51.100.0/24", [["198.51.100.10", "198.51.100.19"]],
                   autoAssign=False, namespaces=[prod]),
          pool("open", "192.0.2.0/24", [["192.0.2.10", "192.0.2.19"]]))
    shared = {"externalip.io/pool": "prod-only", "externalip.io/sharing-key": "k"}
    with scheduler(cp, tmp_path):
        apply(cp, lb_service(prod, "web", annotations=shared))
        assert wait_ingress(cp, prod, "web") == "198.51.100.10"
        intruder = lb_service(unique, "intruder",
                              annotations={"externalip.io/sharing-key": "k"})
        intruder["spec"]["ports"] = [{"port": 443, "protocol": "TCP"}]
        apply(cp, lb_service(unique, "named", annotations={"externalip.io/pool": "prod-only"}),
              lb_service(unique, "requested",
                         annotations={"externalip.io/ips": "198.51.100.15"}),
              intruder)
        assert wait_ingress(cp, unique, "intruder") == "192.0.2.10"  # its own, from "open"
        wait_for(lambda: warned(cp, unique, "named", "NoPool"), what="NoPool on named")
        wait_for(lambda: warned(cp, unique, "requested", "PoolForbidden"),
                 what="PoolForbidden on requested")
        assert ingress(cp, unique, "named") == [] and ingress(cp, unique, "requested") == []
        assert claims(cp)["198-51-100-10-32"]["spec"]["services"] == [f"{prod}/web"]
        assert set(claims(cp)) == {"198-51-100-10-32", "192-0-2-10-32"}


def test_pool_service_selector_holds_for_named_pools_and_requests(
        clean: ControlPlane, agents: FakeAgents, unique: str, tmp_path: Path) -> None:
    """Item 3, `serviceSelector`: the named pool, a requested address and a
    sharing key from a Service the selector does not match all fail to reach
    gold's addresses (a Service joins a shared address only if it could have
    been given it itself)."""
    cp = clean
    apply(cp, pool("gold", "203.0.113.0/24", [["203.0.113.10", "203.0.113.19"]],
                   autoAssign=False, serviceSelector={"matchLabels": {"tier": "gold"}}),
          pool("open", "192.0.2.0/24", [["192.0.2.10", "192.0.2.19"]]))
    gold = lb_service(unique, "gold", annotations={"externalip.io/pool": "gold",
                                                   "externalip.io/sharing-key": "k"})
    gold["metadata"]["labels"] = {"tier": "gold"}
    sharer = lb_service(unique, "sharer", annotations={"externalip.io/sharing-key": "k"})
    sharer["spec"]["ports"] = [{"port": 443, "protocol": "TCP"}]
    with scheduler(cp, tmp_path):
        apply(cp, gold)
        assert wait_ingress(cp, unique, "gold") == "203.0.113.10"
        apply(cp, lb_service(unique, "named", annotations={"externalip.io/pool": "gold"}),
              lb_service(unique, "requested",
                         annotations={"externalip.io/ips": "203.0.113.15"}),
              sharer)
        assert wait_ingress(cp, unique, "sharer") == "192.0.2.10"  # its own, from "open"
        wait_for(lambda: warned(cp, unique, "named", "NoPool"), what="NoPool on named")
        wait_for(lambda: warned(cp, unique, "requested", "PoolForbidden"),
                 what="PoolForbidden on requested")
        assert ingress(cp, unique, "named") == [] and ingress(cp, unique, "requested") == []
        assert claims(cp)["203-0-113-10-32"]["spec"]["services"] == [f"{unique}/gold"]
        assert set(claims(cp)) == {"203-0-113-10-32", "192-0-2-10-32"}


def test_invalid_input_is_refused_before_allocating_with_one_warning(
        clean: ControlPlane, agents: FakeAgents, unique: str, tmp_path: Path) -> None:
    """Item 5: a zoned address and an over-long sharing key get one Warning
    Event each; nothing is allocated, claimed or published."""
    cp = clean
    apply(cp, pool("p6", "2001:db8::/64", [["2001:db8::200", "2001:db8::2ff"]]),
          pool("p4", "192.0.2.0/24", [["192.0.2.10", "192.0.2.19"]]))
    zoned = lb_service(unique, "zoned", annotations={"externalip.io/ips": "2001:db8::200%eth0"},
                       ipFamilies=["IPv6"], ipFamilyPolicy="SingleStack")
    long_key = lb_service(unique, "longkey",
                          annotations={"externalip.io/sharing-key": "k" * 300,
                                       "externalip.io/ips": "2001:db8::200%eth0"})
    with scheduler(cp, tmp_path) as proc:
        apply(cp, zoned, long_key, lb_service(unique, "good"))
        wait_ingress(cp, unique, "good")
        for name in ("zoned", "longkey"):
            wait_for(lambda n=name: warned(cp, unique, n, "InvalidService"),
                     what=f"InvalidService on {name}")
        time.sleep(3)  # several passes (Leases renew every second)
        assert proc.poll() is None
        for name in ("zoned", "longkey"):
            assert ingress(cp, unique, name) == []
            warnings = events(cp, unique, name)
            assert len(warnings) == 1, warnings  # one aggregated Event
        assert "zone" in events(cp, unique, "zoned")[0]
        message = events(cp, unique, "longkey")[0]
        assert "300 characters" in message and "zone" in message
        assert set(claims(cp)) == {"192-0-2-10-32"}
    log = (tmp_path / "scheduler.log").read_text()
    assert "write refused" not in log


def _deny_claim(cp: ControlPlane, name: str, cidr: str) -> None:
    """An admission policy that refuses every claim of `cidr`: a write that fails forever."""
    cp.apply(yaml.safe_dump_all([
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
         "metadata": {"name": name},
         "spec": {"failurePolicy": "Fail",
                  "matchConstraints": {"resourceRules": [{
                      "apiGroups": ["ipcontroller.ext"], "apiVersions": ["v1"],
                      "operations": ["CREATE", "UPDATE"], "resources": ["ipclaims"]}]},
                  "validations": [{"expression": f"object.spec.cidr != '{cidr}'",
                                   "message": "refused by the test"}]}},
        {"apiVersion": "admissionregistration.k8s.io/v1",
         "kind": "ValidatingAdmissionPolicyBinding", "metadata": {"name": name},
         "spec": {"policyName": name, "validationActions": ["Deny"]}}]))
    probe = yaml.safe_dump({"apiVersion": "ipcontroller.ext/v1", "kind": "IpClaim",
                            "metadata": {"name": f"{name}-probe"}, "spec": {"cidr": cidr}})

    def refused() -> bool:
        result = cp.kubectl("create", "-f", "-", input=probe, check=False)
        if result.returncode == 0:
            cp.kubectl("delete", "ipclaim", f"{name}-probe")
        return result.returncode != 0
    wait_for(refused, what="the test's admission policy in force")


def test_a_refused_claim_is_retried_with_its_own_backoff_and_never_published(
        clean: ControlPlane, agents: FakeAgents, unique: str, tmp_path: Path) -> None:
    """Item 5: a claim the API server refuses forever is not published, and its
    retries slow down whatever else happens (other Services' events, Leases)."""
    cp = clean
    _deny_claim(cp, f"{unique}-deny", "192.0.2.10/32")
    try:
        apply(cp, pool("one", "192.0.2.0/24", [["192.0.2.10", "192.0.2.10"]]))
        with scheduler(cp, tmp_path):
            apply(cp, lb_service(unique, "victim"))
            log = tmp_path / "scheduler.log"
            wait_for(lambda: "192-0-2-10-32" in log.read_text(), what="the refused create")
            for i in range(20):  # every one of these changes the plan: a pass each
                apply(cp, ext_service(unique, f"other{i}", f"198.51.100.{i + 1}"))
                time.sleep(0.5)
            wait_for(lambda: len(claims(cp)) == 20, what="the other Services' claims")
            assert ingress(cp, unique, "victim") == []
        refused = [line for line in log.read_text().splitlines()
                   if "write refused" in line and "192-0-2-10-32" in line]
        # 0.5 + 1 + 2 + 4 + 8 s: at most about six tries in the ~12 s above; a
        # retry on every pass would be more than twenty
        assert 2 <= len(refused) <= 8, len(refused)
    finally:
        cp.kubectl("delete", "validatingadmissionpolicybinding,validatingadmissionpolicy",
                   f"{unique}-deny", "--ignore-not-found")


def test_a_node_name_longer_than_a_label_value_gets_claims(
        clean: ControlPlane, unique: str, tmp_path: Path) -> None:
    """Item 15: claims for a node with a 100-character name are created (their
    `ipnode` label is the hashed form the agent selects by)."""
    cp = clean
    long_name = f"{unique}-" + "n" * 60 + ".example-of-a-long-domain.internal"
    fake = FakeAgents(cp, [long_name])
    try:
        apply(cp, pool("p1", "192.0.2.0/24", [["192.0.2.10", "192.0.2.19"]]))
        with scheduler(cp, tmp_path):
            apply(cp, lb_service(unique, "web"))
            assert wait_ingress(cp, unique, "web") == "192.0.2.10"
            claim = claims(cp)["192-0-2-10-32"]
            assert claim["spec"]["nodeName"] == long_name
            selected = cp.kubectl("get", "ipclaims", "-l", f"ipnode={node_label(long_name)}",
                                  "-o", "name").stdout.split()
            assert selected == ["ipclaim.ipcontroller.ext/192-0-2-10-32"]
        assert "write refused" not in (tmp_path / "scheduler.log").read_text()
    finally:
        fake.stop()


def test_a_claim_refused_by_its_node_moves_to_another_eligible_node(
        clean: ControlPlane, agents: FakeAgents, unique: str, tmp_path: Path) -> None:
    """Item 14: an agent's refusal (status.ready=false with a message) makes the
    scheduler place the claim on another eligible node."""
    cp = clean
    apply(cp, pool("p1", "192.0.2.0/24", [["192.0.2.10", "192.0.2.19"]]))

    def node() -> str:
        return str(claims(cp)["192-0-2-10-32"]["spec"].get("nodeName") or "")

    def refuse(as_node: str) -> None:  # what that node's agent writes
        cp.kubectl("patch", "ipclaim", "192-0-2-10-32", "--subresource=status",
                   "--type=merge", "-p", json.dumps({"status": {
                       "ready": False, "holder": None,
                       "message": f"interface 'eth9' not found on this node ({as_node})"}}))

    with scheduler(cp, tmp_path):
        apply(cp, lb_service(unique, "web"))
        wait_ingress(cp, unique, "web")
        first = node()
        refuse(first)
        wait_for(lambda: node() not in ("", first), what="the claim moved off the refusing node")
        second = node()
        refuse(second)
        wait_for(lambda: node() not in ("", second), what="moved off the second refusing node")
        assert ingress(cp, unique, "web") == [{"ip": "192.0.2.10", "ipMode": "VIP"}]


def test_an_address_a_cut_off_node_still_holds_is_not_given_to_another_service(
        clean: ControlPlane, agents: FakeAgents, unique: str, tmp_path: Path) -> None:
    """The known defect of issue 12: a node cut off from the API keeps an address
    whose claim was deleted meanwhile. Until its inventory (IpNode
    status.addresses) says it let go, the address goes to nobody else."""
    cp = clean
    apply(cp, pool("p1", "192.0.2.0/24", [["192.0.2.10", "192.0.2.13"]]))
    with scheduler(cp, tmp_path):
        apply(cp, lb_service(unique, "old"))
        assert wait_ingress(cp, unique, "old") == "192.0.2.10"
        node = claims(cp)["192-0-2-10-32"]["spec"]["nodeName"]
        cp.apply(yaml.safe_dump({"apiVersion": "ipcontroller.ext/v1", "kind": "IpNode",
                                 "metadata": {"name": node}, "spec": {}}))
        cp.kubectl("patch", "ipnode", node, "--subresource=status", "--type=merge", "-p",
                   json.dumps({"status": {"addresses": ["192.0.2.10"]}}))
        agents.kill(node)  # cut off: it will not learn that the claim goes
        cp.kubectl("delete", "service", "-n", unique, "old")
        wait_for(lambda: "192-0-2-10-32" not in claims(cp), what="the old claim deleted")
        apply(cp, lb_service(unique, "new"), ext_service(unique, "ext", "192.0.2.10"))
        assert wait_ingress(cp, unique, "new") == "192.0.2.11"  # .10 skipped
        wait_for(lambda: warned(cp, unique, "ext", "AddressStillHeld"),
                 what="AddressStillHeld Warning on ext")
        assert "192-0-2-10-32" not in claims(cp)
        # the node reconnects and lets go: now the address is free to use
        agents.revive(node)
        cp.kubectl("patch", "ipnode", node, "--subresource=status", "--type=merge", "-p",
                   json.dumps({"status": {"addresses": []}}))
        wait_for(lambda: claims(cp).get("192-0-2-10-32", {}).get("spec", {})
                 .get("services") == [f"{unique}/ext"], what="the claim for ext")
