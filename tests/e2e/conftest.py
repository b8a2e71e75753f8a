"""One lab for the end-to-end suite: a real control plane, three nodes in
network namespaces running the agent and kube-proxy (nftables) with one pod
of app `web` each, two leader-elected schedulers, and a client that reaches
Services over the wire: every answer comes from a pod through kube-proxy."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Generator, Iterator
from typing import Any

import pytest
import yaml

from externalip_lab.lab import Lab
from externalip_lab.netns import entered
from externalip_lab.topology import leftover_namespaces
from tests.helpers import wait_for

NS = "e2e"
APP = "web"  # the app of the pod every node runs


def running_lab(nodes: int = 3, **options: Any) -> Iterator[Lab]:
    """A lab with a pod of APP on every node and the tests' namespace; removed,
    every namespace of it, when the generator closes."""
    options.setdefault("mode", "claims")  # "none": a bare lab, e.g. for MetalLB
    lab = Lab(nodes=nodes, apps=((NS, APP),), **options)
    try:
        lab.start()
        assert lab.cp is not None
        lab.cp.ensure_namespace(NS)
        yield lab
    finally:
        lab.stop()
        assert leftover_namespaces(lab.prefix) == []


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed end-to-end test carries the tail of every agent's and scheduler's log in
    its report: CI keeps nothing else of a lab, and most failures are timing."""
    report = yield
    lab = getattr(item, "funcargs", {}).get("healthy") or getattr(item, "funcargs", {}).get("lab")
    if report.failed and isinstance(lab, Lab):
        for path in sorted([*lab.dir.glob("agent-*.log"), *lab.dir.glob("scheduler-*.log")]):
            tail = path.read_text(errors="replace").splitlines()[-LOG_TAIL:]
            report.sections.append((f"lab log {path.name} (last {LOG_TAIL} lines)",
                                    "\n".join(tail)))
    return report


LOG_TAIL = 40


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    # a short Lease, so the tests see the slow backstop act (or not) in seconds
    yield from running_lab(agent_args=("--hb=2s", "--lease-duration=8s"))


@pytest.fixture
def healthy(lab: Lab) -> Iterator[Lab]:
    """A test that breaks nodes or programs gets them back afterwards, every
    agent ready again (its fence armed: heard by its peers) before the next
    test: an agent still starting is neither a standby that takes over nor a
    peer that confirms the others, and the next test would meet a cluster
    with a node missing."""
    yield lab
    for node in lab.node_names:
        lab.restore_node(node)
    for i in (1, 2):
        if f"scheduler-{i}" not in lab.procs:
            lab.start_scheduler(i)
    wait_for(lambda: all(agent_get(lab, n, "/readyz")[0] == 200 for n in lab.node_names),
             within=60, what="every agent ready")


def agent_get(lab: Lab, node: str, path: str) -> tuple[int, str]:
    """GET path from the agent's endpoint inside its node (status 0: no answer)."""
    conn = http.client.HTTPConnection("127.0.0.1", AGENT_PORT, timeout=5)
    try:
        with entered(lab.topology.node_ns(node)):  # the socket is made in the node
            conn.request("GET", path)
        answer = conn.getresponse()
        return answer.status, answer.read().decode()
    except (OSError, http.client.HTTPException):
        return 0, ""
    finally:
        conn.close()


AGENT_PORT = 9440  # the lab's --metrics-addr for agents


def service(name: str, *, lb: bool = True, external_ips: list[str] | None = None,
            families: list[str] | None = None, policy: str | None = None,
            annotations: dict[str, str] | None = None, port: int = 80,
            local: bool = False, app: str = APP) -> str:
    spec: dict[str, Any] = {"selector": {"app": app},
                            "ports": [{"name": "http", "port": port, "targetPort": 80}]}
    spec["type"] = "LoadBalancer" if lb else "ClusterIP"
    if external_ips:
        spec["externalIPs"] = external_ips
    if families:
        spec["ipFamilies"] = families
    if policy:
        spec["ipFamilyPolicy"] = policy
    if local:
        spec["externalTrafficPolicy"] = "Local"
    meta: dict[str, Any] = {"name": name, "namespace": NS}
    if annotations:
        meta["annotations"] = annotations
    return yaml.safe_dump({"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec})


def get(lab: Lab, *args: str) -> Any:
    assert lab.cp is not None
    return json.loads(lab.cp.kubectl("get", *args, "-o", "json").stdout)


def ingress_ips(lab: Lab, name: str) -> list[str]:
    svc = get(lab, "service", name, "-n", NS)
    return [i["ip"] for i in svc.get("status", {}).get("loadBalancer", {}).get("ingress") or []]


def wait_ingress(lab: Lab, name: str, count: int = 1, within: float = 60) -> list[str]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        ips = ingress_ips(lab, name)
        if len(ips) >= count:
            return ips
        time.sleep(0.1)
    raise AssertionError(f"service {name} got no {count} ingress IP(s) within {within}s")


def wait_reachable(lab: Lab, ip: str, within: float = 60, not_from: str | None = None) -> str:
    return lab.wait_reachable(ip, within, not_from)


def wait_unreachable(lab: Lab, ip: str, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if lab.client_get(ip, timeout=0.3) is None and not lab.holders(ip):
            return
        time.sleep(0.1)
    raise AssertionError(f"{ip} still held by {lab.holders(ip)} after {within}s")


def claims(lab: Lab) -> dict[str, Any]:
    return {c["metadata"]["name"]: c for c in get(lab, "ipclaims")["items"]}
