"""The Helm chart: lint, template, and the same objects as deploy/.

helm is built from the Go module proxy by tools/build-helm.sh (cached in
~/.cache/externalip/helm-<version>/). The chart's CRDs and RBAC are links to
deploy/'s files; workloads are templates, so their pod specs are compared
with deploy/'s field by field (labels aside) at the default values.
"""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from externalip_lab.controlplane import ControlPlane
from tests.integration.test_deploy_config import BY_ENV

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "externalip"
DEPLOY = REPO / "deploy"
# simple mode's RBAC, applied on its own (not in the default kustomization)
SIMPLE_RBAC = DEPLOY / "rbac" / "simple.yaml"
KUBE_VERSION = "1.37.2"  # helm template has no cluster to ask
WORKLOADS = {"DaemonSet", "Deployment"}

Helm = Callable[..., subprocess.CompletedProcess[str]]
Ident = tuple[str, str, str]


@pytest.fixture(scope="module")
def helm() -> Helm:
    build = subprocess.run(["bash", str(REPO / "tools" / "build-helm.sh")],
                           stdout=subprocess.PIPE, text=True, check=True, timeout=1800)
    binary = build.stdout.strip().splitlines()[-1]

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([binary, *args], capture_output=True, text=True,
                                timeout=120, check=False)
        if check:
            assert result.returncode == 0, f"helm {' '.join(args)}:\n{result.stderr}"
        return result

    return run


def template(helm: Helm, *sets: str, crds: bool = True) -> list[dict[str, Any]]:
    args = ["template", "externalip", str(CHART), "--namespace", "externalip",
            "--kube-version", KUBE_VERSION]
    if crds:
        args.append("--include-crds")
    for s in sets:
        args += ["--set", s]
    return [d for d in yaml.safe_load_all(helm(*args).stdout) if d]


def load(*paths: Path) -> list[dict[str, Any]]:
    return [d for p in paths for d in yaml.safe_load_all(p.read_text()) if d]


def by_identity(objs: list[dict[str, Any]]) -> dict[Ident, dict[str, Any]]:
    out: dict[Ident, dict[str, Any]] = {}
    for o in objs:
        key = (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"])
        assert key not in out, f"{key} rendered twice"
        out[key] = o
    return out


def normalized(obj: dict[str, Any]) -> dict[str, Any]:
    """An object without labels (Helm adds its own), with a workload's pod
    template reduced to its spec and env as a mapping, so content counts, not order."""
    out = {**obj, "metadata": {k: v for k, v in obj["metadata"].items()
                               if k not in {"labels", "annotations"}}}
    if obj["kind"] in WORKLOADS:
        out["spec"] = {**obj["spec"], "template": {"spec": pod_spec(obj)}}
    return out


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec = dict(workload["spec"]["template"]["spec"])
    spec["containers"] = [
        {**c, "env": {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}}
        for c in spec["containers"]]
    return spec


def kustomized(cp: ControlPlane) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(cp.kubectl("kustomize", str(DEPLOY)).stdout) if d]


def test_lint_passes_in_both_modes(helm: Helm) -> None:
    for mode in ("claims", "simple"):
        result = helm("lint", "--strict", str(CHART), "--kube-version", KUBE_VERSION,
                      "--set", f"mode={mode}")
        assert "0 chart(s) failed" in result.stdout


def test_claims_mode_renders_the_objects_of_deploy(helm: Helm,
                                                  control_plane: ControlPlane) -> None:
    chart = by_identity(template(helm))
    deploy = by_identity(kustomized(control_plane))
    # the heartbeat key: random, so the chart makes it and deploy/ says how
    peer_keys = chart.pop(("Secret", "externalip", "externalip-peer-keys"))
    assert len(base64.b64decode(peer_keys["data"]["1"])) >= 32
    # Helm installs into a namespace it does not own: the user creates it
    # (with its Pod Security labels) from deploy/namespace.yaml
    del deploy[("Namespace", "", "externalip")]
    # kustomize re-folds long CEL expressions (same meaning, other
    # whitespace): compare the objects that hold them with their source files
    deploy.update(by_identity(load(*sorted((DEPLOY / "crds").glob("ip*.yaml")),
                                   *sorted((DEPLOY / "admission").glob("*.yaml")))))
    assert set(chart) == set(deploy)
    for key, obj in deploy.items():
        assert normalized(chart[key]) == normalized(obj), key


def test_simple_mode_renders_the_simple_manifests(helm: Helm) -> None:
    chart = by_identity(template(helm, "mode=simple", crds=False))
    deploy = by_identity(load(SIMPLE_RBAC, DEPLOY / "simple" / "simple.yaml"))
    assert set(chart) == set(deploy)
    for key, obj in deploy.items():
        assert normalized(chart[key]) == normalized(obj), key
    # the ECMP/BGP variant: one per node, on lo
    ds = by_identity(template(helm, "mode=simple", "simple.kind=DaemonSet", "interface=lo",
                              crds=False))[("DaemonSet", "externalip", "externalip-simple")]
    assert pod_spec(ds)["containers"][0]["env"]["EXTERNALIP_IFACE"] == "lo"
    assert "replicas" not in ds["spec"]


def test_values_reach_the_programs(helm: Helm) -> None:
    objs = by_identity(template(
        helm, "interface=bond0", "scheduler.nodefilter=first-alive", "agent.leaseDuration=3s",
        "scheduler.replicas=3", "image.repository=registry.example.com/eip", "image.tag=1.2.3",
        "nodeSelector.rack=r1", "pools[0].name=lan", "pools[0].cidr=192.0.2.0/24",
        "pools[0].autoAssign=false", crds=False))
    agent = pod_spec(objs[("DaemonSet", "externalip", "externalip-agent")])
    scheduler = objs[("Deployment", "externalip", "externalip-scheduler")]
    assert agent["containers"][0]["env"]["EXTERNALIP_IFACE"] == "bond0"
    assert agent["containers"][0]["env"]["EXTERNALIP_LEASE_DURATION"] == "3s"
    assert agent["nodeSelector"] == {"ipcontroller": "", "rack": "r1"}
    assert agent["containers"][0]["image"] == "registry.example.com/eip:1.2.3"
    assert scheduler["spec"]["replicas"] == 3
    assert pod_spec(scheduler)["containers"][0]["env"]["EXTERNALIP_NODEFILTER"] == "first-alive"
    pool = objs[("IpClaimPool", "", "lan")]
    assert pool["spec"] == {"cidr": "192.0.2.0/24", "autoAssign": False}
    # every variable the chart sets is a flag of the program it configures
    for obj in objs.values():
        if obj["kind"] in WORKLOADS:
            (container,) = obj["spec"]["template"]["spec"]["containers"]
            for env in container["env"]:
                assert container["args"][0] in BY_ENV[env["name"]].programs


@pytest.mark.parametrize("bad", ["mode=both", "scheduler.nodefilter=random",
                                 "agent.heartbeat=2x", "interface=", "pools[0].name=p"])
def test_invalid_values_are_refused(helm: Helm, bad: str) -> None:
    result = helm("template", "externalip", str(CHART), "--kube-version", KUBE_VERSION,
                  "--set", bad, check=False)
    assert result.returncode != 0, f"{bad} was accepted"


def test_rendered_chart_is_accepted_by_the_api_server(helm: Helm, crds: ControlPlane) -> None:
    crds.apply(DEPLOY / "namespace.yaml")
    for mode in ("claims", "simple"):
        rendered = helm("template", "externalip", str(CHART), "--namespace", "externalip",
                        "--kube-version", KUBE_VERSION, "--set", f"mode={mode}",
                        "--set", "pools[0].name=helm-check",
                        "--set", "pools[0].cidr=198.51.100.0/28").stdout
        crds.kubectl("apply", "--dry-run=server", "-f", "-", input=rendered)


def test_packaged_chart_renders_the_same(helm: Helm, tmp_path: Path) -> None:
    """The chart's CRDs and RBAC are links into deploy/: a packaged chart must
    carry their content, or an install from the .tgz would lack them."""
    helm("package", str(CHART), "--destination", str(tmp_path))
    (package,) = tmp_path.glob("externalip-*.tgz")
    args = ["template", "externalip", "--namespace", "externalip", "--kube-version",
            KUBE_VERSION, "--include-crds"]
    from_dir = helm(*args[:2], str(CHART), *args[2:]).stdout
    from_package = helm(*args[:2], str(package), *args[2:]).stdout
    def objects(text: str) -> list[dict[str, Any]]:
        # the heartbeat key is random on every render: compare all but its value
        return [{**d, "data": "random"} if d["kind"] == "Secret" else d
                for d in yaml.safe_load_all(text) if d]
    assert objects(from_package) == objects(from_dir)
    assert "CustomResourceDefinition" in from_package and "ClusterRole" in from_package


def test_hardened_metrics_keep_the_probes_and_metrics_auth_brings_its_rbac(helm: Helm) -> None:
    """Issue 12, item 10: /metrics on loopback moves the probes to the pod's own
    address on healthPort; metricsAuth adds the delegation RBAC of deploy/."""
    objs = by_identity(template(helm, "metricsHost=::1", "metricsAuth=true", crds=False))
    agent = pod_spec(objs[("DaemonSet", "externalip", "externalip-agent")])["containers"][0]
    env = agent["env"]
    assert env["EXTERNALIP_METRICS_ADDR"] == "[::1]:9440"
    assert env["EXTERNALIP_HEALTH_ADDR"] == "$(POD_IP):9441"
    assert env["POD_IP"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    assert env["EXTERNALIP_METRICS_AUTH"] == "true"
    assert agent["livenessProbe"]["httpGet"]["port"] == "health"
    assert {"name": "health", "containerPort": 9441, "protocol": "TCP"} in agent["ports"]
    shipped = by_identity(load(REPO / "deploy" / "rbac" / "metrics-auth.yaml"))
    for key, obj in shipped.items():
        assert normalized(objs[key]) == normalized(obj), key
    plain = by_identity(template(helm, crds=False))
    env = pod_spec(plain[("DaemonSet", "externalip", "externalip-agent")])["containers"][0]["env"]
    assert "EXTERNALIP_HEALTH_ADDR" not in env and "EXTERNALIP_METRICS_AUTH" not in env
    assert not set(shipped) & set(plain)


def test_the_grafana_dashboard_ships_as_an_optional_configmap(helm: Helm) -> None:
    assert not [o for o in template(helm, crds=False) if o["kind"] == "ConfigMap"
                and "grafana" in o["metadata"]["name"]]  # opt-in
    maps = [o for o in template(helm, "grafanaDashboard.enabled=true", crds=False)
            if o["kind"] == "ConfigMap" and "grafana" in o["metadata"]["name"]]
    assert len(maps) == 1 and maps[0]["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = (REPO / "deploy" / "grafana" / "externalip-dashboard.json").read_text()
    assert json.loads(maps[0]["data"]["externalip-dashboard.json"]) == json.loads(shipped)


def test_realtime_heartbeats_add_sys_nice_and_only_then(helm: Helm) -> None:
    def agent(*sets: str) -> tuple[list[str], str]:
        objs = by_identity(template(helm, *sets, crds=False))
        (container,) = pod_spec(objs[("DaemonSet", "externalip", "externalip-agent")])[
            "containers"]
        return (container["securityContext"]["capabilities"]["add"],
                container["env"]["EXTERNALIP_PEER_PRIORITY"])

    assert agent() == (["NET_ADMIN", "NET_RAW"], "0")
    assert agent("agent.realtimeHeartbeats=true") == (["NET_ADMIN", "NET_RAW", "SYS_NICE"], "10")
