"""`kubectl apply -k deploy/` against the real API server, and what it installs.

No controller-manager or kubelet runs here, so the DaemonSet and Deployment
are stored but never run; what is checked is that the API server accepts every
object as shipped and that the objects read back carry the settings the
project depends on (host network, capabilities, replicas, leader election).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from externalip_lab.controlplane import ControlPlane

pytestmark = pytest.mark.integration

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
# simple mode's RBAC, applied on its own (not in the default kustomization)
SIMPLE_RBAC = DEPLOY / "rbac" / "simple.yaml"
NS = "externalip"


def rendered(cp: ControlPlane, directory: Path) -> list[dict[str, Any]]:
    out = cp.kubectl("kustomize", str(directory)).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def identity(obj: dict[str, Any]) -> tuple[str, str, str]:
    meta = obj["metadata"]
    return obj["kind"], meta.get("namespace", ""), meta["name"]


def read_back(cp: ControlPlane, objs: list[dict[str, Any]]) -> dict[tuple[str, str, str], Any]:
    found: dict[tuple[str, str, str], Any] = {}
    for obj in objs:
        kind, ns, name = identity(obj)
        group = obj["apiVersion"].split("/")[0] if "/" in obj["apiVersion"] else ""
        resource = f"{kind.lower()}.{group}" if group else kind.lower()
        args = ["get", resource, name, "-o", "json"] + (["-n", ns] if ns else [])
        found[(kind, ns, name)] = json.loads(cp.kubectl(*args).stdout)
    return found


@pytest.fixture(scope="module")
def installed(control_plane: ControlPlane) -> dict[tuple[str, str, str], Any]:
    objs = rendered(control_plane, DEPLOY)
    control_plane.apply(DEPLOY)
    return read_back(control_plane, objs)


def test_apply_k_installs_claims_mode_and_every_object_reads_back(
        control_plane: ControlPlane, installed: dict[tuple[str, str, str], Any]) -> None:
    expected = {identity(o) for o in rendered(control_plane, DEPLOY)}
    assert set(installed) == expected
    kinds = {k for k, _, _ in expected}
    assert {"CustomResourceDefinition", "Namespace", "ServiceAccount", "DaemonSet",
            "Deployment", "PodDisruptionBudget"} <= kinds
    assert {n for k, _, n in expected if k == "CustomResourceDefinition"} == {
        "ipclaimpools.ipcontroller.ext", "ipclaims.ipcontroller.ext", "ipnodes.ipcontroller.ext"}
    # RBAC comes from the programs' own role files, with bindings to our accounts
    subjects = {(s["namespace"], s["name"])
                for (k, _, _), o in installed.items() if k.endswith("Binding")
                for s in o.get("subjects", [])}
    assert {(NS, "externalip-agent"), (NS, "externalip-scheduler")} <= subjects
    # simple mode is not part of the default install
    assert not any(n == "externalip-simple" for _, _, n in expected)


def test_agent_daemonset_is_host_network_with_only_net_admin_and_net_raw(
        installed: dict[tuple[str, str, str], Any]) -> None:
    ds = installed[("DaemonSet", NS, "externalip-agent")]
    pod = ds["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    assert pod["serviceAccountName"] == "externalip-agent"
    assert pod["nodeSelector"] == {"ipcontroller": ""}
    (container,) = pod["containers"]
    assert container["args"][0] == "agent"
    sc = container["securityContext"]
    assert sc.get("privileged", False) is False
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"], "add": ["NET_ADMIN", "NET_RAW"]}
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["resources"]["requests"]
    env = {e["name"]: e for e in container["env"]}
    # the node name, not the OS hostname, names the agent's Lease and IpNode
    assert env["EXTERNALIP_HOSTNAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"


def test_scheduler_runs_two_leader_elected_non_root_replicas_with_a_budget(
        installed: dict[tuple[str, str, str], Any]) -> None:
    dep = installed[("Deployment", NS, "externalip-scheduler")]
    assert dep["spec"]["replicas"] == 2
    pod = dep["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "externalip-scheduler"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod.get("hostNetwork", False) is False
    (container,) = pod["containers"]
    assert container["args"][0] == "scheduler"
    assert "--leader-elect=true" in container["args"]
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    pdb = installed[("PodDisruptionBudget", NS, "externalip-scheduler")]
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]


def test_namespace_allows_the_agents_host_network_under_pod_security(
        installed: dict[tuple[str, str, str], Any]) -> None:
    labels = installed[("Namespace", "", NS)]["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "privileged"


def test_examples_apply_unchanged(crds: ControlPlane, unique: str) -> None:
    # the nginx example goes to a namespace of its own so it cannot collide
    crds.ensure_namespace(unique)
    nginx = ["-n", unique, "-f", str(DEPLOY / "examples" / "nginx.yaml")]
    try:
        crds.apply(DEPLOY / "examples" / "ip-pool.yaml")
        pool = json.loads(crds.kubectl("get", "ipclaimpool", "test-pool", "-o",
                                       "json").stdout)
        assert pool["spec"]["ranges"] == [["192.168.0.249", "192.168.0.250"],
                                          ["192.168.0.252", "192.168.0.253"]]
        crds.kubectl("apply", "--server-side", *nginx)
        svc = json.loads(crds.kubectl("get", "service", "nginx", "-n", unique, "-o",
                                      "json").stdout)
        assert svc["spec"]["type"] == "LoadBalancer"
    finally:
        # a LoadBalancer Service left behind would take addresses from other
        # tests' pools whenever a scheduler runs on this control plane
        crds.kubectl("delete", "--ignore-not-found", "--wait=false", *nginx)
        crds.kubectl("delete", "ipclaimpool", "test-pool", "--ignore-not-found")


def test_simple_mode_manifest_applies_separately(control_plane: ControlPlane) -> None:
    control_plane.kubectl(
        "apply", "--server-side", "-f", str(DEPLOY / "namespace.yaml"),
        "-f", str(SIMPLE_RBAC), "-f", str(DEPLOY / "simple"))
    dep = json.loads(control_plane.kubectl("get", "deployment", "externalip-simple", "-n", NS,
                                           "-o", "json").stdout)
    spec = dep["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"]["type"] == "Recreate"  # never two holders during a rollout
    pod = spec["template"]["spec"]
    assert pod["hostNetwork"] is True
    assert pod["serviceAccountName"] == "externalip-simple"
    assert pod["containers"][0]["args"] == ["simple"]
