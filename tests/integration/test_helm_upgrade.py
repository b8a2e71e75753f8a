"""The chart upgrades: the previous chart version, installed with helm against
a real kube-apiserver, is upgraded to this one; CRDs and objects are updated,
and no claim, pool or Service address changes.

The previous version is taken from git history: the parent of the commit that
gave charts/externalip/Chart.yaml its current version, exported with
`git archive` (the chart's links into deploy/ come with it). A control plane
of its own, because the session's already holds CRDs applied by kubectl.
"""

from __future__ import annotations

import importlib
import io
import json
import re
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

from externalip_lab.controlplane import ControlPlane
from tests.integration.test_helm import CHART, DEPLOY, KUBE_VERSION, REPO, Helm, helm  # noqa: F401 (helm: the fixture)

pytestmark = pytest.mark.integration

NS = "externalip"
POOL = ["--set", "pools[0].name=upgrade", "--set", "pools[0].cidr=198.51.100.0/28"]
CRD_NAMES = ("ipclaimpools.ipcontroller.ext", "ipclaims.ipcontroller.ext",
             "ipnodes.ipcontroller.ext")


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True,
                          check=True).stdout


def chart_version(text: str) -> str:
    match = re.search(r"^version:\s*(\S+)", text, re.M)
    assert match, "Chart.yaml has no version"
    return match.group(1)


def previous_chart(into: Path) -> tuple[Path, str]:
    """(chart directory, version) of the chart before its current version."""
    current = chart_version((CHART / "Chart.yaml").read_text())
    commits = git("log", "--format=%H", "--", "charts/externalip/Chart.yaml").split()
    # the oldest commit already at the current version introduced it
    introducing = [c for c in commits if chart_version(
        git("show", f"{c}:charts/externalip/Chart.yaml")) == current][-1]
    archive = subprocess.run(["git", "-C", str(REPO), "archive", f"{introducing}~1",
                              "charts/externalip", "deploy"], capture_output=True, check=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="tar")
    chart = into / "charts" / "externalip"
    previous = chart_version((chart / "Chart.yaml").read_text())
    assert previous != current
    return chart, previous


@pytest.fixture(scope="module")
def plane() -> Iterator[ControlPlane]:
    with ControlPlane() as cp:
        cp.apply(DEPLOY / "namespace.yaml")
        yield cp


def get(cp: ControlPlane, *what: str) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(cp.kubectl("get", *what, "-o", "json").stdout)
    return out


def addresses(cp: ControlPlane) -> dict[str, Any]:
    """Everything that says which address serves what: claims (spec, status,
    uid), pools (spec, uid) and the Service's ingress."""
    claims = get(cp, "ipclaims")["items"]
    pools = get(cp, "ipclaimpools")["items"]
    svc = get(cp, "service", "web", "-n", "default")
    return {"claims": {c["metadata"]["name"]: (c["metadata"]["uid"], c["spec"], c.get("status"))
                       for c in claims},
            "pools": {p["metadata"]["name"]: (p["metadata"]["uid"], p["spec"]) for p in pools},
            "ingress": svc["status"]["loadBalancer"]}


def hold_an_address(cp: ControlPlane) -> None:
    """What a running installation leaves in the API: a claim held by a node
    and a Service whose status names the address."""
    cp.apply(yaml.safe_dump({
        "apiVersion": "ipcontroller.ext/v1", "kind": "IpClaim",
        "metadata": {"name": "198-51-100-1-32"},
        "spec": {"cidr": "198.51.100.1/32", "nodeName": "node-a", "pool": "upgrade",
                 "services": ["default/web"]}}))
    cp.kubectl("patch", "ipclaim", "198-51-100-1-32", "--subresource=status", "--type=merge",
               "-p", json.dumps({"status": {"ready": True, "holder": "node-a"}}))
    cp.apply(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
        "spec": {"type": "LoadBalancer", "allocateLoadBalancerNodePorts": False,
                 "ports": [{"port": 80}]}}))
    cp.kubectl("patch", "service", "web", "-n", "default", "--subresource=status",
               "--type=merge", "-p", json.dumps(
                   {"status": {"loadBalancer": {"ingress": [{"ip": "198.51.100.1",
                                                             "ipMode": "VIP"}]}}}))


def test_previous_chart_upgrades_to_this_one(helm: Helm, plane: ControlPlane,  # noqa: F811
                                              tmp_path: Path) -> None:
    old_chart, old_version = previous_chart(tmp_path / "old")
    kc = ["--kubeconfig", str(plane.kubeconfig), "--namespace", NS]
    helm("install", "externalip", str(old_chart), *kc, *POOL)
    hold_an_address(plane)
    before = addresses(plane)
    old_crd = get(plane, "crd", "ipclaims.ipcontroller.ext")

    # CRDs installed from an old chart's crds/ carry no Helm ownership: the
    # first upgrade adopts them once (docs/install.md says so)
    refused = helm("upgrade", "externalip", str(CHART), *kc, *POOL, check=False)
    assert refused.returncode != 0 and "CustomResourceDefinition" in refused.stderr
    helm("upgrade", "externalip", str(CHART), *kc, *POOL, "--take-ownership")

    for name in CRD_NAMES:
        crd = get(plane, "crd", name)
        meta = crd["metadata"]
        assert meta["annotations"]["helm.sh/resource-policy"] == "keep", name
        assert meta["annotations"]["meta.helm.sh/release-name"] == "externalip", name
        source = yaml.safe_load((DEPLOY / "crds" / f"{name.split('.')[0]}.yaml").read_text())
        # this chart's CRD is what the cluster serves (the API server prunes
        # empty `properties: {}`, so compare what it keeps verbatim)
        served, ours = crd["spec"]["versions"][0], source["spec"]["versions"][0]
        assert served.get("additionalPrinterColumns") == ours.get("additionalPrinterColumns")
        for part in ("spec", "status"):
            assert set(served["schema"]["openAPIV3Schema"]["properties"][part].get(
                "properties", {})) == set(ours["schema"]["openAPIV3Schema"]["properties"][
                    part].get("properties", {})), (name, part)
    assert get(plane, "crd", "ipclaims.ipcontroller.ext")["metadata"]["uid"] == \
        old_crd["metadata"]["uid"]  # updated in place, never deleted (that deletes every claim)
    chart_label = f"externalip-{yaml.safe_load((CHART / 'Chart.yaml').read_text())['version']}"
    agent = get(plane, "daemonset", "externalip-agent", "-n", NS)
    assert agent["metadata"]["labels"]["helm.sh/chart"] == chart_label
    assert chart_label != f"externalip-{old_version}"
    assert agent["spec"]["template"]["spec"]["priorityClassName"] == "system-node-critical"
    pdb = get(plane, "pdb", "externalip-scheduler", "-n", NS)
    assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    assert addresses(plane) == before


def test_later_upgrades_update_the_crds_and_uninstall_keeps_them(
        helm: Helm, plane: ControlPlane, tmp_path: Path) -> None:  # noqa: F811
    """From now on a plain `helm upgrade` carries CRD changes (what crds/ never
    did); `helm uninstall` leaves the CRDs and so every address in place."""
    if "externalip" not in helm("list", "-q", "--kubeconfig", str(plane.kubeconfig),
                                "-n", NS).stdout:
        pytest.skip("needs the release of test_previous_chart_upgrades_to_this_one")
    before = addresses(plane)
    newer = tmp_path / "newer"
    subprocess.run(["cp", "-rL", str(CHART), str(newer)], check=True)
    crd_file = newer / "files" / "crds" / "ipclaims.yaml"
    crd = yaml.safe_load(crd_file.read_text())
    crd["spec"]["versions"][0]["additionalPrinterColumns"].insert(
        0, {"name": "UPGRADED", "type": "string", "jsonPath": ".spec.link"})
    crd_file.write_text(yaml.safe_dump(crd))
    kc = ["--kubeconfig", str(plane.kubeconfig), "--namespace", NS]
    helm("upgrade", "externalip", str(newer), *kc, *POOL)
    columns = get(plane, "crd", "ipclaims.ipcontroller.ext")["spec"]["versions"][0][
        "additionalPrinterColumns"]
    assert columns[0]["name"] == "UPGRADED"
    assert addresses(plane) == before

    helm("uninstall", "externalip", *kc)
    for name in CRD_NAMES:
        get(plane, "crd", name)  # still there
    assert addresses(plane)["claims"] == before["claims"]


def test_a_first_install_creates_its_pools_and_upgrades_adopt_them(helm: Helm) -> None:  # noqa: F811
    """The CRDs and the pools of values come in one release: the pools wait
    for the CRDs as a post-install hook, and the next upgrade takes them over
    as ordinary release objects (same object, new spec; removed on uninstall)."""
    with ControlPlane() as cp:
        cp.apply(DEPLOY / "namespace.yaml")
        kc = ["--kubeconfig", str(cp.kubeconfig), "--namespace", NS]
        helm("install", "externalip", str(CHART), *kc, *POOL)
        (pool,) = get(cp, "ipclaimpools")["items"]
        assert pool["spec"]["cidr"] == "198.51.100.0/28"
        # the first upgrade adopts the hook-made pool as it is (Helm patches
        # an adopted object from its own rendering, so a values change made
        # in this very upgrade is not applied: the values comment says so);
        # later upgrades change it as any release object
        helm("upgrade", "externalip", str(CHART), *kc, *POOL)
        (adopted,) = get(cp, "ipclaimpools")["items"]
        assert adopted["metadata"]["uid"] == pool["metadata"]["uid"]
        helm("upgrade", "externalip", str(CHART), *kc, "--set", "pools[0].name=upgrade",
             "--set", "pools[0].cidr=198.51.100.0/27")
        (after,) = get(cp, "ipclaimpools")["items"]
        assert after["metadata"]["uid"] == pool["metadata"]["uid"]
        assert after["spec"]["cidr"] == "198.51.100.0/27"
        helm("uninstall", "externalip", *kc)
        assert get(cp, "ipclaimpools")["items"] == []
        for name in CRD_NAMES:
            get(cp, "crd", name)


def test_every_metric_the_alerts_use_is_exported(helm: Helm) -> None:  # noqa: F811
    """The PrometheusRule queries only series the programs export (importing
    the modules that define the metrics registers them)."""
    for module in ("externalip.net.holder", "externalip.net.heartbeat", "externalip.loops",
                   "externalip.scheduler.metrics", "externalip.kube.api.gateway"):
        importlib.import_module(module)
    # a labelled gauge has no sample before its first label: its family names it
    families = list(REGISTRY.collect())
    exported = {f.name for f in families} | {s.name for f in families for s in f.samples}
    rendered = helm("template", "externalip", str(CHART), "--namespace", NS,
                    "--kube-version", KUBE_VERSION, "--set", "metrics.prometheusRule.enabled=true",
                    "--show-only", "templates/monitoring.yaml").stdout
    (rule,) = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "PrometheusRule"]
    exprs = [r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]]
    used = {name for e in exprs for name in re.findall(r"\bexternalip_[a-z_]+", e)}
    assert len(exprs) == 4 and used
    assert used <= exported, used - exported


@pytest.mark.parametrize("misspelt", ["agent.heartbeet=2s", "metrics.serviceMonitor.enabeld=true",
                                      "scheduler.podDisruptionBudget.minAvailabel=1",
                                      "pools[0].name=p,pools[0].cidr=192.0.2.0/24,pools[0].rnages=x",
                                      "crds.instal=false"])
def test_a_misspelt_value_fails_the_install(helm: Helm, misspelt: str) -> None:  # noqa: F811
    result = helm("template", "externalip", str(CHART), "--kube-version", KUBE_VERSION,
                  "--set", misspelt, check=False)
    assert result.returncode != 0 and "additional properties" in result.stderr, misspelt


def test_optional_objects_render_and_are_accepted(helm: Helm, crds: ControlPlane) -> None:  # noqa: F811
    """NetworkPolicy and the metrics Services go to the API server (dry run);
    the Prometheus Operator kinds, whose CRDs are not there, are checked by shape."""
    crds.apply(DEPLOY / "namespace.yaml")
    rendered = helm("template", "externalip", str(CHART), "--namespace", NS,
                    "--kube-version", KUBE_VERSION,
                    "--set", "scheduler.networkPolicy.enabled=true",
                    "--set", "scheduler.networkPolicy.apiServerCIDRs={192.0.2.1/32}",
                    "--set", "metrics.serviceMonitor.enabled=true",
                    "--set", "metrics.podMonitor.enabled=true",
                    "--set", "metrics.prometheusRule.enabled=true").stdout
    objs = [d for d in yaml.safe_load_all(rendered) if d]
    operator = [o for o in objs if o["apiVersion"].startswith("monitoring.coreos.com/")]
    assert sorted(o["kind"] for o in operator) == ["PodMonitor", "PodMonitor", "PrometheusRule",
                                                   "ServiceMonitor", "ServiceMonitor"]
    rest = [o for o in objs if o not in operator]
    crds.kubectl("apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump_all(rest))
    (policy,) = [o for o in objs if o["kind"] == "NetworkPolicy"]
    (scheduler,) = [o for o in objs if o["kind"] == "Deployment"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= \
        scheduler["spec"]["template"]["metadata"]["labels"].items()
    assert policy["spec"]["egress"][0]["to"] == [{"ipBlock": {"cidr": "192.0.2.1/32"}}]
    assert policy["spec"]["ingress"][0]["ports"] == [{"port": 9440, "protocol": "TCP"}]
    for monitor in (o for o in operator if o["kind"] != "PrometheusRule"):
        labels = monitor["spec"]["selector"]["matchLabels"]  # selects a Service or pods
        assert any(labels.items() <= o["metadata"]["labels"].items() for o in objs
                   if o["kind"] in ("Service", "DaemonSet", "Deployment")), monitor
