"""The foundation: a real control plane, our CRDs, validation at kubectl apply, RBAC."""

from __future__ import annotations

import json

import pytest
import yaml

from externalip_lab.controlplane import ControlPlane
from tests.conftest import REPO

pytestmark = pytest.mark.integration


def _pool(name: str, spec: str) -> str:
    return (
        "apiVersion: ipcontroller.ext/v1\nkind: IpClaimPool\n"
        f"metadata: {{name: {name}}}\nspec:\n{spec}"
    )


def test_control_plane_is_ready_and_versioned(control_plane: ControlPlane) -> None:
    version = json.loads(control_plane.kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"].startswith("v1.3")
    assert control_plane.kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"


def test_crds_are_established(crds: ControlPlane) -> None:
    for plural in ("ipclaimpools", "ipclaims", "ipnodes"):
        crd = json.loads(crds.kubectl("get", "crd", f"{plural}.ipcontroller.ext", "-o",
                                      "json").stdout)
        conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conditions["Established"] == "True", plural
        assert crd["spec"]["scope"] == "Cluster"


def test_seed_pool_example_applies_unchanged_and_reads_back(crds: ControlPlane) -> None:
    crds.kubectl("apply", "-f", str(REPO / "examples" / "ip-pool.yml"))
    pool = json.loads(crds.kubectl("get", "ipclaimpool", "test-pool", "-o", "json").stdout)
    assert pool["spec"]["cidr"] == "192.168.0.248/29"
    assert pool["spec"]["ranges"] == [["192.168.0.249", "192.168.0.250"],
                                      ["192.168.0.252", "192.168.0.253"]]
    assert pool["spec"]["autoAssign"] is True  # defaulted by the schema
    table = crds.kubectl("get", "ipclaimpools", "test-pool").stdout
    assert table.split()[:4] == ["NAME", "CIDR", "USED", "FREE"]


@pytest.mark.parametrize(
    ("case", "spec", "field", "words"),
    [
        ("cidr-unparsable", "  cidr: 192.0.2.0/33", "spec.cidr", "CIDR notation"),
        ("cidr-garbage", "  cidr: not-a-network", "spec.cidr", "CIDR notation"),
        ("cidr-missing", "  ranges: [[192.0.2.1, 192.0.2.2]]", "spec.cidr", "Required"),
        ("range-outside", "  cidr: 192.0.2.0/24\n  ranges: [[192.0.2.10, 198.51.100.5]]",
         "spec.ranges", "inside spec.cidr"),
        ("range-reversed", "  cidr: 192.0.2.0/24\n  ranges: [[192.0.2.20, 192.0.2.10]]",
         "spec.ranges[0]", "must not be greater"),
        ("range-triple", "  cidr: 192.0.2.0/24\n  ranges: [[192.0.2.1, 192.0.2.2, 192.0.2.3]]",
         "spec.ranges[0]", "at most 2"),
        ("range-single", "  cidr: 192.0.2.0/24\n  ranges: [[192.0.2.1]]",
         "spec.ranges[0]", "at least 2"),
        ("range-not-ip", "  cidr: 192.0.2.0/24\n  ranges: [[first, 192.0.2.5]]",
         "spec.ranges[0]", "pair of IP addresses"),
        ("mixed-families", "  cidr: 192.0.2.0/24\n  ranges: [[2001:db8::1, 2001:db8::5]]",
         "spec.ranges", "same IP family"),
        ("mixed-families-6in4", "  cidr: 2001:db8::/120\n  ranges: [[192.0.2.1, 192.0.2.5]]",
         "spec.ranges", "same IP family"),
        # special networks (issue 12, item 6; docs/security.md)
        *((f"special-{i}", f"  cidr: {cidr}", "spec.cidr", "special network")
          for i, cidr in enumerate(["127.0.0.0/8", "::1/128", "0.0.0.0/8", "224.0.0.0/24",
                                    "169.254.0.0/16", "240.0.0.0/4", "255.255.255.255/32",
                                    "fe80::/64", "ff02::/16", "::/0", "0.0.0.0/0"])),
        *((f"special-range-{i}", f"  cidr: {cidr}\n  ranges: [[{first}, {last}]]",
           "spec.ranges[0]", "special address")
          for i, (cidr, first, last) in enumerate([
              ("128.0.0.0/1", "192.0.2.1", "224.0.0.1"),
              ("128.0.0.0/1", "240.0.0.1", "240.0.0.9"),
              ("0.0.0.0/1", "0.0.0.1", "0.0.0.9"),
              ("0.0.0.0/1", "127.0.0.1", "127.0.0.9"),
              ("128.0.0.0/1", "169.254.0.1", "169.254.0.2"),
              ("fe00::/9", "'fe80::1'", "'fe80::2'")])),
    ],
)
def test_bad_pools_are_rejected_by_kubectl_apply(
    crds: ControlPlane, case: str, spec: str, field: str, words: str
) -> None:
    result = crds.kubectl("apply", "-f", "-", input=_pool(f"bad-{case}", spec), check=False)
    assert result.returncode != 0, result.stdout
    assert field + ":" in result.stderr, result.stderr
    assert words in result.stderr, result.stderr
    missing = crds.kubectl("get", "ipclaimpool", f"bad-{case}", check=False)
    assert missing.returncode != 0


def test_good_pools_of_both_families_are_accepted(crds: ControlPlane) -> None:
    crds.kubectl("apply", "-f", "-", input=_pool(
        "good-v6", "  cidr: 2001:db8:1::/120\n  ranges: [[2001:db8:1::10, 2001:db8:1::20]]"))
    crds.kubectl("apply", "-f", "-", input=_pool(
        "good-v4-single-address", "  cidr: 198.51.100.0/24\n"
        "  ranges: [[198.51.100.7, 198.51.100.7]]"))


def test_claim_printer_columns_and_cidr_validation(crds: ControlPlane) -> None:
    crds.kubectl("apply", "-f", "-", input=yaml.safe_dump({
        "apiVersion": "ipcontroller.ext/v1", "kind": "IpClaim",
        "metadata": {"name": "192-0-2-7-32"},
        "spec": {"cidr": "192.0.2.7/32", "nodeName": "node-a"}}))
    header, row = crds.kubectl("get", "ipclaims", "192-0-2-7-32").stdout.splitlines()
    assert header.split()[:3] == ["NAME", "IP", "NODE"] and "AGE" in header
    assert row.split()[1:3] == ["192.0.2.7/32", "node-a"]
    bad = crds.kubectl("apply", "-f", "-", check=False, input=yaml.safe_dump({
        "apiVersion": "ipcontroller.ext/v1", "kind": "IpClaim",
        "metadata": {"name": "bad-claim"}, "spec": {"cidr": "192.0.2.7"}}))
    assert bad.returncode != 0 and "spec.cidr" in bad.stderr
    moved = crds.kubectl("patch", "ipclaim", "192-0-2-7-32", "--type=merge", "-p",
                         '{"spec": {"cidr": "192.0.2.8/32"}}', check=False)
    assert moved.returncode != 0 and "immutable" in moved.stderr


def test_service_account_token_authenticates_and_rbac_denies(crds: ControlPlane,
                                                             unique: str) -> None:
    kubeconfig = crds.service_account_kubeconfig(unique, "reader")
    crds.apply(yaml.safe_dump_all([
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": f"{unique}-read-claims"},
         "rules": [{"apiGroups": ["ipcontroller.ext"], "resources": ["ipclaims"],
                    "verbs": ["get", "list"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": f"{unique}-read-claims"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": f"{unique}-read-claims"},
         "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": unique}]},
    ]))
    who = json.loads(crds.kubectl("auth", "whoami", "-o", "json", kubeconfig=kubeconfig).stdout)
    assert who["status"]["userInfo"]["username"] == f"system:serviceaccount:{unique}:reader"
    crds.kubectl("get", "ipclaims", kubeconfig=kubeconfig)  # allowed
    denied = crds.kubectl("delete", "ipclaim", "192-0-2-7-32", kubeconfig=kubeconfig,
                          check=False)
    assert denied.returncode != 0 and "forbidden" in denied.stderr
    secrets = crds.kubectl("get", "secrets", "-A", kubeconfig=kubeconfig, check=False)
    assert secrets.returncode != 0 and "forbidden" in secrets.stderr
