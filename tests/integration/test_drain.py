"""Drain against the real API server: `externalip drain` labels the Node, the
scheduler (under its shipped RBAC) moves the node's claims away with a
hand-over, mirrors the drain on the IpNode for `kubectl get ipnodes`, and an
undrain moves nothing back. A cordon alone moves nothing."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from externalip_lab.controlplane import ControlPlane
from tests.helpers import wait_for
from tests.integration.scheduler_harness import (
    FakeAgents,
    apply,
    claims,
    events,
    get,
    lb_service,
    pool,
    scheduler,
)

pytestmark = pytest.mark.integration


def externalip(cp: ControlPlane, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "externalip", *args,
                           f"--kubeconfig={cp.kubeconfig}"],
                          capture_output=True, text=True, timeout=60, check=False)


def placed(cp: ControlPlane) -> dict[str, str]:
    return {n: c["spec"].get("nodeName", "") for n, c in claims(cp).items()}


def test_drain_hands_claims_over_shows_on_ipnodes_and_undrain_moves_nothing_back(
        clean: ControlPlane, agents: FakeAgents, unique: str, tmp_path: Path) -> None:
    cp = clean
    apply(cp, pool("p", "192.0.2.0/24", [["192.0.2.80", "192.0.2.89"]]),
          *({"apiVersion": "ipcontroller.ext/v1", "kind": "IpNode", "metadata": {"name": n},
             "spec": {}} for n in agents.nodes))
    cp.kubectl("cordon", "node-a")  # as kubeadm upgrade and kubectl drain do
    with scheduler(cp, tmp_path):
        apply(cp, *(lb_service(unique, f"s{i}") for i in range(3)))
        wait_for(lambda: all(placed(cp).values()) and len(placed(cp)) == 3, what="placed")
        before = placed(cp)
        assert sorted(before.values()) == ["node-a", "node-b", "node-c"]  # cordon: still fair
        time.sleep(2)
        assert placed(cp) == before  # and nothing moves

        result = externalip(cp, "drain", "node-a", "--wait", "--timeout=30s")
        assert result.returncode == 0, result.stderr
        assert "holds no address" in result.stdout
        (name,) = [n for n, node in before.items() if node == "node-a"]
        claim = claims(cp)[name]
        assert claim["spec"]["nodeName"] in ("node-b", "node-c")
        assert claim["spec"]["handoverFrom"] == "node-a"
        assert claim["metadata"]["labels"]["node.ipcontroller.ext/node-a"] == "handover"
        assert all("node-a" not in c["spec"].get("standbys", []) for c in claims(cp).values())
        svc = claim["spec"]["services"][0].split("/")[1]
        assert any("ClaimMoved" in e and "draining" in e for e in events(cp, unique, svc))
        wait_for(lambda: get(cp, "ipnode", "node-a").get("spec", {}).get("draining") is True,
                 what="IpNode mirrors the drain")
        header, row = cp.kubectl("get", "ipnode", "node-a").stdout.splitlines()
        column = header.index("DRAINING")  # (empty columns leave blanks: read by position)
        assert row[column:].split()[0] == "true"
        # a new Service is not placed on the draining node
        apply(cp, lb_service(unique, "late"))
        wait_for(lambda: len(placed(cp)) == 4 and all(placed(cp).values()), what="late placed")
        assert "node-a" not in placed(cp).values()

        drained = placed(cp)
        result = externalip(cp, "undrain", "node-a")
        assert result.returncode == 0, result.stderr
        wait_for(lambda: "draining" not in get(cp, "ipnode", "node-a").get("spec", {}),
                 what="IpNode no longer draining")
        wait_for(lambda: any("node-a" in c["spec"].get("standbys", [])
                             for c in claims(cp).values()), what="node-a a standby again")
        assert placed(cp) == drained  # no fail-back

    missing = externalip(cp, "drain", "no-such-node")
    assert missing.returncode == 1 and "no Node named 'no-such-node'" in missing.stderr
