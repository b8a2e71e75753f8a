"""Conditions `kubectl wait` can use (issue 15, item 1), against the real API
server: the scheduler as a process under its shipped account and admission
policies, fake agents (Leases the test renews)."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest

from externalip_lab.controlplane import ControlPlane
from externalip_lab.controlplane.server import free_port
from tests.helpers import wait_for
from tests.integration.scheduler_harness import (
    FakeAgents,
    apply,
    get,
    lb_service,
    pool,
    scheduler,
)

pytestmark = pytest.mark.integration
DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
ASSIGNED = "externalip.io/AddressAssigned"


def wait(cp: ControlPlane, condition: str, *target: str, timeout: int = 30) -> None:
    result = cp.kubectl("wait", f"--for=condition={condition}", f"--timeout={timeout}s",
                        *target, check=False, timeout=timeout + 10)
    assert result.returncode == 0, f"kubectl wait {condition} {target}: {result.stderr}"


def metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as page:
        return str(page.read().decode())


def condition(obj: dict[str, object], kind: str) -> dict[str, str]:
    conds = (obj.get("status") or {}).get("conditions") or []  # type: ignore[attr-defined]
    return next(c for c in conds if c["type"] == kind)


def test_kubectl_wait_on_services_pools_and_nodes(clean: ControlPlane, agents: FakeAgents,
                                                  unique: str, tmp_path: Path) -> None:
    cp = clean
    cp.apply(DEPLOY / "admission")  # the scheduler writes its conditions under its policy
    ipnodes: list[dict[str, object]] = [
        {"apiVersion": "ipcontroller.ext/v1", "kind": "IpNode", "metadata": {"name": n}}
        for n in agents.nodes]
    apply(cp, pool("cond", "192.0.2.0/24", [["192.0.2.40", "192.0.2.40"]]), *ipnodes)
    port = free_port()
    with scheduler(cp, tmp_path, f"--metrics-addr=127.0.0.1:{port}"):
        apply(cp, lb_service(unique, "web"))
        wait(cp, ASSIGNED, "service/web", "-n", unique)
        web = get(cp, "service", "web", "-n", unique)
        assert web["status"]["loadBalancer"]["ingress"][0]["ip"] == "192.0.2.40"
        assert condition(web, ASSIGNED)["reason"] == "IPAllocated"
        wait(cp, "Exhausted", "ipclaimpool/cond")
        # the pool's only address is taken: the next Service says why it waits
        apply(cp, lb_service(unique, "late"))
        wait(cp, f"{ASSIGNED}=false", "service/late", "-n", unique)
        late = condition(get(cp, "service", "late", "-n", unique), ASSIGNED)
        assert late["reason"] == "PoolExhausted" and "cond" in late["message"]
        # freed: the waiting Service gets it, its condition turns
        cp.kubectl("delete", "service", "web", "-n", unique)
        wait(cp, ASSIGNED, "service/late", "-n", unique)
        for node in agents.nodes:
            wait(cp, "Healthy", f"ipnode/{node}")
        agents.kill("node-b")
        wait(cp, "Healthy=false", "ipnode/node-b")
        assert condition(get(cp, "ipnode", "node-b"), "Healthy")["reason"] == "AgentDown"
        agents.revive("node-b")
        wait(cp, "Healthy", "ipnode/node-b")
        # a pool no node may serve: the address is allocated, but nobody can hold it,
        # and both the Service and the claim say so
        apply(cp, pool("nowhere", "198.51.100.0/24", [["198.51.100.41", "198.51.100.41"]],
                       autoAssign=False, nodeSelector={"matchLabels": {"no-such": "node"}}),
              lb_service(unique, "stranded", annotations={"externalip.io/pool": "nowhere"}))
        wait(cp, "Scheduled=false", "ipclaim/198-51-100-41-32")
        wait(cp, f"{ASSIGNED}=false", "service/stranded", "-n", unique)
        stranded = condition(get(cp, "service", "stranded", "-n", unique), ASSIGNED)
        assert stranded["reason"] == "NoEligibleNode" and "198.51.100.41" in stranded["message"]
        # the allocation histogram counted the Services, and a deleted pool's series go
        page = metrics(port)
        assert 'externalip_pool_addresses{pool="nowhere"}' in page
        assert float(page.split("externalip_allocation_seconds_count ")[1].split()[0]) >= 3
        cp.kubectl("delete", "service", "stranded", "-n", unique)
        cp.kubectl("delete", "ipclaimpool", "nowhere")
        wait_for(lambda: 'pool="nowhere"' not in metrics(port), what="the pool's series removed")
