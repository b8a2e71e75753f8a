"""`externalip status` works with only the read-only role deploy/ ships for it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from externalip_lab.controlplane import ControlPlane

pytestmark = pytest.mark.integration

ROLE = Path(__file__).resolve().parents[2] / "deploy" / "status-reader.yaml"


def test_status_runs_with_the_reader_role_which_cannot_write(crds: ControlPlane,
                                                            unique: str) -> None:
    crds.apply(ROLE)
    crds.apply(yaml.safe_dump({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": f"{unique}-status"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "externalip-status-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": f"{unique}-viewer",
                      "namespace": "default"}]}))
    kubeconfig = crds.service_account_kubeconfig("default", f"{unique}-viewer")
    result = subprocess.run(
        [sys.executable, "-m", "externalip", "status", "--kubeconfig", str(kubeconfig),
         "-o", "json"], capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "EXTERNALIP_NAMESPACE": "externalip"})
    assert result.returncode == 0, result.stderr
    who = f"--as=system:serviceaccount:default:{unique}-viewer"
    for verb, resource in (("create", "ipclaimpools"), ("patch", "services"),
                           ("get", "secrets"), ("delete", "ipclaims")):
        answer = crds.kubectl("auth", "can-i", verb, resource, who, "-A", check=False)
        assert answer.stdout.strip() == "no", (verb, resource)
