"""Admission policies that limit what our service accounts write (issue 12,
items 7 and 12), with real TokenRequest tokens of the shipped accounts
against the real API server, where the policies run after RBAC."""

from __future__ import annotations

import http.client
import json
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from externalip_lab.controlplane import ControlPlane

pytestmark = pytest.mark.integration

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
NS = "externalip"


class Account:
    def __init__(self, cp: ControlPlane, name: str) -> None:
        self.cp, self.kubeconfig = cp, cp.service_account_kubeconfig(NS, name)

    def __call__(self, *args: str, input: str | None = None) -> tuple[bool, str]:
        result = self.cp.kubectl(*args, input=input, kubeconfig=self.kubeconfig, check=False)
        return result.returncode == 0, result.stderr

    def patch(self, path: str, body: object) -> tuple[bool, str]:
        """A merge patch as our programs send it (kubectl would GET first, which
        the accounts may not)."""
        config = yaml.safe_load(self.kubeconfig.read_text())
        cluster, user = config["clusters"][0]["cluster"], config["users"][0]["user"]
        host, port = cluster["server"].removeprefix("https://").rsplit(":", 1)
        context = ssl.create_default_context(cafile=cluster["certificate-authority"])
        conn = http.client.HTTPSConnection(host, int(port), context=context, timeout=30)
        try:
            conn.request("PATCH", path, body=json.dumps(body), headers={
                "Authorization": f"Bearer {user['token']}",
                "Content-Type": "application/merge-patch+json"})
            resp = conn.getresponse()
            return resp.status < 300, resp.read().decode()
        finally:
            conn.close()


@pytest.fixture(scope="module")
def policies(crds: ControlPlane) -> Iterator[ControlPlane]:
    crds.apply(DEPLOY)
    ns = "wpol" + time.strftime("%H%M%S")
    crds.ensure_namespace(ns)
    crds.apply(yaml.safe_dump({"apiVersion": "v1", "kind": "Service",
                               "metadata": {"name": "victim", "namespace": ns},
                               "spec": {"selector": {"app": "victim"}, "ports": [{"port": 80}],
                                        "type": "LoadBalancer",
                                        "allocateLoadBalancerNodePorts": False}}))
    scheduler = Account(crds, "externalip-scheduler")
    deadline = time.monotonic() + 30  # policies are loaded asynchronously
    while scheduler("patch", "service", "victim", "-n", ns, "--type=merge", "-p",
                    '{"metadata": {"labels": {"probe": "x"}}}')[0]:
        crds.kubectl("label", "service", "victim", "-n", ns, "probe-")
        assert time.monotonic() < deadline, "the admission policies never took effect"
        time.sleep(0.2)
    yield crds
    crds.kubectl("delete", "service", "victim", "-n", ns, "--ignore-not-found")


def namespace_of_victim(cp: ControlPlane) -> str:
    items = json.loads(cp.kubectl("get", "services", "-A", "--field-selector",
                                  "metadata.name=victim", "-o", "json").stdout)["items"]
    return str(items[0]["metadata"]["namespace"])


def test_the_scheduler_writes_only_external_ips_and_the_load_balancer_status(
        policies: ControlPlane) -> None:
    cp, ns = policies, namespace_of_victim(policies)
    scheduler = Account(cp, "externalip-scheduler")

    def patch(body: dict[str, object], *extra: str) -> tuple[bool, str]:
        return scheduler("patch", "service", "victim", "-n", ns, "--type=merge", *extra,
                         "-p", json.dumps(body))
    ok, err = patch({"spec": {"selector": {"app": "attacker"}}})
    assert not ok and "only spec.externalIPs" in err
    ok, err = patch({"spec": {"ports": [{"port": 22}]}})
    assert not ok and "only spec.externalIPs" in err
    ok, err = patch({"metadata": {"annotations": {"x": "y"}}})
    assert not ok and "labels, annotations" in err
    ok, err = patch({"spec": {"externalIPs": ["192.0.2.77"]}})
    assert ok, err
    status = f"/api/v1/namespaces/{ns}/services/victim/status"
    ok, err = scheduler.patch(status, {"status": {"loadBalancer": {"ingress": [
        {"ip": "192.0.2.78", "ipMode": "VIP"}]}}})
    assert ok, err
    ok, err = scheduler.patch(status, {"status": {"conditions": [{
        "type": "Forged", "status": "True", "reason": "Forged", "message": "",
        "lastTransitionTime": "2026-01-01T00:00:00Z"}]}})
    assert not ok and "only status.loadBalancer" in err
    ours = {"type": "externalip.io/AddressAssigned", "status": "True", "reason": "IPAllocated",
            "message": "192.0.2.78", "lastTransitionTime": "2026-01-01T00:00:00Z"}
    ok, err = scheduler.patch(status, {"status": {"loadBalancer": {"ingress": [
        {"ip": "192.0.2.78", "ipMode": "VIP"}]}, "conditions": [ours]}})
    assert ok, err  # its own condition, in the same patch as the address
    svc = json.loads(cp.kubectl("get", "service", "victim", "-n", ns, "-o", "json").stdout)
    assert [c["type"] for c in svc["status"]["conditions"]] == [ours["type"]]
    svc = json.loads(cp.kubectl("get", "service", "victim", "-n", ns, "-o", "json").stdout)
    assert svc["spec"]["selector"] == {"app": "victim"}
    # a ClusterIP Service's first external IP (external-ip: auto): the API server
    # defaults externalTrafficPolicy with it, which the policy lets through
    cp.apply(yaml.safe_dump({"apiVersion": "v1", "kind": "Service",
                             "metadata": {"name": "auto", "namespace": ns},
                             "spec": {"ports": [{"port": 80}]}}))
    ok, err = scheduler("patch", "service", "auto", "-n", ns, "--type=merge", "-p",
                        '{"spec": {"externalIPs": ["192.0.2.79"]}}')
    assert ok, err
    ok, err = scheduler("patch", "service", "auto", "-n", ns, "--type=merge", "-p",
                        '{"spec": {"externalIPs": null}}')
    assert ok, err
    ok, err = scheduler("patch", "service", "auto", "-n", ns, "--type=merge", "-p",
                        '{"spec": {"externalTrafficPolicy": "Local", "type": "NodePort"}}')
    assert not ok


def event(name: str, ns: str, component: str, reason: str = "Test") -> str:
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Event", "metadata": {"name": name, "namespace": ns},
        "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": "p", "namespace": ns},
        "type": "Warning", "reason": reason, "message": "test",
        "source": {"component": component}, "reportingComponent": component,
        "reportingInstance": component})


@pytest.mark.parametrize("account", ["externalip-agent", "externalip-scheduler"])
def test_our_accounts_write_only_events_they_report(policies: ControlPlane,
                                                    account: str) -> None:
    cp, ns = policies, namespace_of_victim(policies)
    cp.apply(DEPLOY / "rbac" / f"{account.removeprefix('externalip-')}.yaml")
    writer = Account(cp, account)
    suffix = account.removeprefix("externalip-")
    ok, err = writer("create", "-f", "-", input=event(f"forged-{suffix}", "kube-system",
                                                       "node-controller", "NodeNotReady"))
    assert not ok and "may only write Events it reports" in err
    ok, err = writer("create", "-f", "-", input=event(f"ours-{suffix}", ns, account))
    assert ok, err
    ok, err = writer.patch(f"/api/v1/namespaces/{ns}/events/ours-{suffix}", {"count": 2})
    assert ok, err
    # someone else's Event cannot be rewritten, nor relabelled as ours
    cp.apply(event(f"theirs-{suffix}", ns, "kubelet"))
    theirs = f"/api/v1/namespaces/{ns}/events/theirs-{suffix}"
    ok, err = writer.patch(theirs, {"message": "rewritten"})
    assert not ok and "may only" in err
    ok, err = writer.patch(theirs, {"source": {"component": account},
                                    "reportingComponent": account})
    assert not ok and "may only update Events it reported itself" in err
