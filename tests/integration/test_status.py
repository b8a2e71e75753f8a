"""`externalip status` against the real API server holding a known state.

The command runs as a process, as a user runs it. The control plane is shared
with other tests, so every object here has unique names (and addresses in a
range no other test uses), and only those rows are checked.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from externalip_lab.controlplane import ControlPlane

pytestmark = pytest.mark.integration


def microtime(seconds_ago: float) -> str:
    t = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=seconds_ago)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def objects(u: str, net: str) -> list[dict[str, Any]]:
    """A pool of 4 usable addresses (the seed's shape), two agents (one alive,
    one whose Lease lapsed), three claims and four Services."""
    ip = [f"{net}.{i}" for i in range(8)]
    cluster = "ipcontroller.ext/v1"

    def claim(addr: str, node: str, pool: str, svc: str) -> dict[str, Any]:
        return {"apiVersion": cluster, "kind": "IpClaim",
                "metadata": {"name": f"{u}-{addr.replace('.', '-')}-32"},
                "spec": {"cidr": f"{addr}/32", "nodeName": node, "pool": pool,
                         "services": [f"{u}/{svc}"]}}

    def lease(node: str, seconds_ago: float) -> dict[str, Any]:
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": node, "namespace": u},
                "spec": {"holderIdentity": node, "leaseDurationSeconds": 6,
                         "renewTime": microtime(seconds_ago)}}

    def service(name: str, **spec: Any) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name, "namespace": u},
                "spec": {"ports": [{"port": 80}], **spec}}

    return [
        {"apiVersion": cluster, "kind": "IpClaimPool", "metadata": {"name": f"{u}-pool"},
         "spec": {"cidr": f"{net}.0/29", "ranges": [[ip[1], ip[2]], [ip[4], ip[5]]]}},
        {"apiVersion": cluster, "kind": "IpNode", "metadata": {"name": f"{u}-alive"}},
        {"apiVersion": cluster, "kind": "IpNode", "metadata": {"name": f"{u}-dead"}},
        lease(f"{u}-alive", 0), lease(f"{u}-dead", 120),
        claim(ip[1], f"{u}-alive", f"{u}-pool", "web"),
        claim(ip[2], f"{u}-dead", f"{u}-pool", "api"),
        claim(ip[5], f"{u}-alive", "", "fixed"),  # requested by hand, inside the pool
        service("web", type="LoadBalancer"),
        service("api", externalIPs=[ip[2]]),
        service("fixed", externalIPs=[ip[5]]),
        service("pending", type="LoadBalancer"),
    ]


def run_status(cp: ControlPlane, namespace: str, *args: str) -> str:
    env = {**os.environ, "EXTERNALIP_NAMESPACE": namespace}
    result = subprocess.run(
        [sys.executable, "-m", "externalip", "status", "--kubeconfig", str(cp.kubeconfig),
         *args], capture_output=True, text=True, env=env, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def known_state(crds: ControlPlane) -> Iterator[tuple[ControlPlane, str, str]]:
    u = "st" + os.urandom(3).hex()
    # 198.18.0.0/15 (benchmarking) is used by no other test; nothing is sent to it
    net = f"198.18.{int(u[2:4], 16)}"
    crds.ensure_namespace(u)
    crds.apply(yaml.safe_dump_all(objects(u, net)))
    # status is a subresource: the claims' readiness as their agent would write it
    crds.kubectl("patch", "ipclaim", f"{u}-{net.replace('.', '-')}-1-32",
                 "--subresource=status", "--type=merge", "-p",
                 json.dumps({"status": {"ready": True, "holder": f"{u}-alive"}}))
    crds.kubectl("patch", "service", "web", "-n", u, "--subresource=status", "--type=merge",
                 "-p", json.dumps({"status": {"loadBalancer": {"ingress": [{"ip": f"{net}.1"}]}}}))
    crds.apply(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": f"pending.{u}", "namespace": u},
        "involvedObject": {"apiVersion": "v1", "kind": "Service", "name": "pending",
                           "namespace": u},
        "type": "Warning", "reason": "PoolExhausted", "message": "no free address in any pool",
        "source": {"component": "externalip-scheduler"},
        "firstTimestamp": microtime(5)[:19] + "Z", "lastTimestamp": microtime(5)[:19] + "Z",
        "count": 1}))
    yield crds, u, net
    # leave nothing a scheduler in a later test could act on
    crds.kubectl("delete", "services", "--all", "-n", u, "--wait=false")
    for kind in ("ipclaim", "ipnode", "ipclaimpool"):
        names = [o["metadata"]["name"] for o in objects(u, net) if o["kind"].lower() == kind]
        crds.kubectl("delete", kind, *names, "--ignore-not-found", "--wait=false")


def test_json_reports_the_known_numbers(known_state: tuple[ControlPlane, str, str]) -> None:
    cp, u, _ = known_state
    report = json.loads(run_status(cp, u, "-o", "json"))
    (pool,) = [p for p in report["pools"] if p["name"] == f"{u}-pool"]
    # 4 usable; .1 and .2 allocated from it, .5 requested by hand inside it
    assert (pool["total"], pool["used"], pool["free"]) == (4, 3, 1)
    nodes = {n["name"]: n for n in report["nodes"] if n["name"].startswith(u)}
    assert nodes[f"{u}-alive"]["alive"] is True
    assert nodes[f"{u}-alive"]["lease_age"] < 30
    assert (nodes[f"{u}-alive"]["claims"], nodes[f"{u}-alive"]["ready"]) == (2, 1)
    assert nodes[f"{u}-dead"]["alive"] is False
    assert nodes[f"{u}-dead"]["lease_age"] >= 120
    assert nodes[f"{u}-dead"]["claims"] == 1
    waiting = {w["service"]: w for w in report["waiting"] if w["service"].startswith(u + "/")}
    assert set(waiting) == {f"{u}/api", f"{u}/fixed", f"{u}/pending"}
    assert "expired" in waiting[f"{u}/api"]["reason"]
    assert "not confirmed" in waiting[f"{u}/fixed"]["reason"]
    assert waiting[f"{u}/pending"] == {"service": f"{u}/pending", "wants": "LoadBalancer",
                                       "reason": "PoolExhausted: no free address in any pool"}


def test_table_shows_the_same(known_state: tuple[ControlPlane, str, str]) -> None:
    cp, u, net = known_state
    lines = run_status(cp, u).splitlines()
    (pool_line,) = [ln for ln in lines if ln.startswith(f"{u}-pool ")]
    assert pool_line.split() == [f"{u}-pool", f"{net}.0/29", "4", "3", "1", "true"]
    (dead,) = [ln for ln in lines if ln.startswith(f"{u}-dead ")]
    # alive, healthy (no scheduler: no condition), draining, claims, ready, holds
    assert dead.split()[2:] == ["no", "-", "no", "1", "0", "0"]
    assert any(ln.startswith(f"{u}/pending ") and "PoolExhausted" in ln for ln in lines)


def test_unreadable_api_is_an_error_message_not_a_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "kubeconfig"
    bad.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "x",
        "clusters": [{"name": "x", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "x", "user": {"token": "t"}}],
        "contexts": [{"name": "x", "context": {"cluster": "x", "user": "x"}}]}))
    result = subprocess.run([sys.executable, "-m", "externalip", "status", "--kubeconfig",
                             str(bad)], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert result.stderr.startswith("externalip status:")
    assert "Traceback" not in result.stderr
