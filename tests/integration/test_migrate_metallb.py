"""`externalip migrate metallb` against a real API server holding MetalLB's
CRDs (from the MetalLB v0.15.2 module source, tools/build-metallb.sh): it
reads MetalLB's objects from the cluster or from files, prints IpClaimPools
the API server accepts, creates them with --apply, and leaves an existing
pool alone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from externalip_lab.controlplane import ControlPlane
from externalip_lab.metallb import build

pytestmark = pytest.mark.integration


def run(cp: ControlPlane, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "externalip", "migrate", "metallb",
                           "--kubeconfig", str(cp.kubeconfig), *args],
                          capture_output=True, text=True, timeout=60, check=False)


def metallb_objects(ns: str, unique: str) -> list[dict[str, Any]]:
    meta = {"namespace": ns}
    return [
        {"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
         "metadata": {"name": f"{unique}-a", **meta},
         "spec": {"addresses": ["198.51.100.16/29"], "autoAssign": False,
                  "serviceAllocation": {"namespaces": ["web"]}}},
        {"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
         "metadata": {"name": f"{unique}-b", **meta},
         "spec": {"addresses": ["198.51.100.40-198.51.100.42"]}},
        {"apiVersion": "metallb.io/v1beta1", "kind": "L2Advertisement",
         "metadata": {"name": f"{unique}-l2", **meta},
         "spec": {"ipAddressPools": [f"{unique}-a", f"{unique}-b"],
                  "nodeSelectors": [{"matchLabels": {"rack": "r1"}}]}},
    ]


@pytest.fixture(scope="module")
def metallb_crds(crds: ControlPlane) -> ControlPlane:
    _, source = build()
    crds.install_crds(source / "config" / "crd" / "bases")
    return crds


def test_reads_the_cluster_and_writes_pools_the_api_server_accepts(
        metallb_crds: ControlPlane, unique: str, tmp_path: Path) -> None:
    cp = metallb_crds
    cp.ensure_namespace(unique)
    objects = metallb_objects(unique, unique)
    cp.apply(yaml.safe_dump_all(objects))

    printed = run(cp, "-n", unique)
    assert printed.returncode == 0, printed.stderr
    pools = list(yaml.safe_load_all(printed.stdout))
    assert [p["metadata"]["name"] for p in pools] == [f"{unique}-a", f"{unique}-b"]
    assert pools[0]["spec"]["namespaces"] == ["web"]
    assert pools[1]["spec"]["nodeSelector"] == {"matchLabels": {"rack": "r1"}}
    assert printed.stderr == ""  # everything carried over
    cp.kubectl("apply", "--dry-run=server", "-f", "-", input=printed.stdout)

    # the same from a file (a List, as `kubectl get -o yaml` writes it)
    listed = tmp_path / "metallb.yaml"
    listed.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": objects}))
    from_file = run(cp, "-f", str(listed))
    assert from_file.returncode == 0 and from_file.stdout == printed.stdout

    applied = run(cp, "-n", unique, "--apply")
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.split("\n")[:2] == [f"ipclaimpool/{unique}-a created",
                                             f"ipclaimpool/{unique}-b created"]
    cp.kubectl("patch", "ipclaimpool", f"{unique}-b", "--type=merge",
               "-p", '{"spec": {"autoAssign": false}}')
    again = run(cp, "-n", unique, "--apply")
    assert f"ipclaimpool/{unique}-a exists, left alone\n" in again.stdout
    assert f"ipclaimpool/{unique}-b exists, left alone (its spec differs" in again.stdout
    cp.kubectl("delete", "ipclaimpool", f"{unique}-a", f"{unique}-b")


def test_failures_are_one_line_not_a_traceback(metallb_crds: ControlPlane,
                                               tmp_path: Path) -> None:
    missing = run(metallb_crds, "-f", str(tmp_path / "nothing.yaml"))
    assert missing.returncode == 1
    assert missing.stderr.startswith("externalip migrate metallb: ")
    assert "Traceback" not in missing.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: IPAddressPool\n  : [")
    result = run(metallb_crds, "-f", str(bad))
    assert result.returncode == 1 and "Traceback" not in result.stderr
