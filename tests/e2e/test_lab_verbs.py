"""The verbs for a lab that is up, as a user runs them from another shell:
`lab up --detach`, `lab env`, `lab fault ...`, `lab pod ...`, `lab down
--prefix`. One detached lab of two nodes with the schedulers in the nodes."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from externalip_lab.labstate import running_labs
from externalip_lab.topology import leftover_namespaces, node_addresses
from tests.conftest import REPO
from tests.helpers import wait_for

# kubectl words a client-side timeout either way, depending on where it struck
TIMED_OUT = re.compile(r"deadline exceeded|Timeout exceeded")

pytestmark = [pytest.mark.e2e, pytest.mark.netns]


class Detached:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def run(self, *words: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([sys.executable, "-m", "externalip", "lab", *words,
                                 f"--prefix={self.prefix}"], capture_output=True, text=True,
                                timeout=300, check=False)
        assert not check or result.returncode == 0, result.stderr
        return result

    def state(self) -> dict[str, Any]:
        return next(s for s in running_labs() if s["prefix"] == self.prefix)

    def env(self) -> dict[str, str]:
        lines = self.run("env").stdout.splitlines()
        pairs = dict(line.removeprefix("export ").split("=", 1) for line in lines)
        pairs["PATH"] = pairs["PATH"].replace("$PATH", os.environ["PATH"])
        return {**os.environ, **pairs}

    def kubectl(self, *args: str) -> Any:
        out = subprocess.run(["kubectl", *args, "-o", "json"], env=self.env(),
                             capture_output=True, text=True, check=True).stdout
        return json.loads(out)

    def in_node(self, node: str, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", f"{self.prefix}-{node}", *argv],
                              capture_output=True, text=True, timeout=60, check=False)

    def exec(self, node: str, *argv: str) -> subprocess.CompletedProcess[str]:
        """`lab exec NODE -- ...`: options go before the verb, the command after `--`."""
        return subprocess.run([sys.executable, "-m", "externalip", "lab",
                               f"--prefix={self.prefix}", "exec", node, "--", *argv],
                              capture_output=True, text=True, timeout=60, check=False)

    def node_kubectl(self, node: str, timeout: str) -> subprocess.CompletedProcess[str]:
        """kubectl inside the node through its API proxy, as the agent reaches the API."""
        return self.exec(node, "kubectl", f"--request-timeout={timeout}", "auth", "whoami")


@pytest.fixture(scope="module")
def detached() -> Iterator[Detached]:
    lab = Detached("eipv" + secrets.token_hex(2))
    try:
        lab.run("up", "--detach", "--nodes=2", "--schedulers-in-nodes")
        yield lab
    finally:
        lab.run("down", check=False)
        assert leftover_namespaces(lab.prefix) == []
        assert lab.prefix not in {s["prefix"] for s in running_labs()}


def test_env_points_kubectl_at_the_lab(detached: Detached) -> None:
    nodes = detached.kubectl("get", "nodes")["items"]
    assert sorted(n["metadata"]["name"] for n in nodes) == ["node1", "node2"]


def test_status_names_the_namespaces_and_kubeconfigs(detached: Detached) -> None:
    out = detached.run("status").stdout
    state = detached.state()
    assert f"kubeconfig: {state['kubeconfig']}" in out
    for node in ("node1", "node2"):
        assert f"namespace {node}: {detached.prefix}-{node}" in out
    assert f"namespace client: {detached.prefix}-client" in out
    assert f"namespace lan: {detached.prefix}-lan" in out


def test_exec_runs_in_the_node_with_its_agents_credentials(detached: Detached) -> None:
    """One command, no prefix parsing, no guessed names, no hand-minted token."""
    who = detached.exec("node2", "kubectl", "auth", "whoami", "-o", "json")
    assert who.returncode == 0, who.stderr
    user = json.loads(who.stdout)["status"]["userInfo"]["username"]
    assert user == "system:serviceaccount:externalip:externalip-agent"
    addr = detached.exec("node2", "ip", "-j", "addr", "show", "dev", "eth0")
    assert node_addresses(2)[0] in addr.stdout  # the node's namespace, not ours
    env = detached.exec("node2", "sh", "-c", "echo $EXTERNALIP_HOSTNAME; exit 3")
    assert env.returncode == 3 and env.stdout.strip() == "node2"  # the command's own status
    bad = detached.exec("node9", "true")
    assert bad.returncode == 1 and "NODE one of node1, node2" in bad.stderr


def exposed(text: str) -> set[str]:
    """The sample names a /metrics page can have, from its TYPE lines (a
    labelled series with no sample yet still declares itself)."""
    names: set[str] = set()
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"),
                "summary": ("_sum", "_count")}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            names |= {name, *(name + s for s in suffixes.get(kind, ()))}
    return names


def test_every_metric_the_dashboard_queries_exists_on_a_running_program(
        detached: Detached) -> None:
    """deploy/grafana's dashboard against the agents' and both schedulers' /metrics
    in the running lab (read from inside their nodes, where they listen)."""
    dashboard = json.loads((REPO / "deploy" / "grafana" / "externalip-dashboard.json")
                           .read_text())
    queried = {name for panel in dashboard["panels"] for target in panel["targets"]
               for name in re.findall(r"\bexternalip_[a-z0-9_]+", target["expr"])}
    assert len(queried) >= 15
    scrape = ("import sys, urllib.request; "
              "print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())")
    found: set[str] = set()
    # the agents on 9440, the schedulers (--schedulers-in-nodes) on 9451 and 9452
    for node, port in (("node1", 9440), ("node2", 9440), ("node1", 9451), ("node2", 9452)):
        page = detached.exec(node, sys.executable, "-c", scrape,
                             f"http://127.0.0.1:{port}/metrics")
        assert page.returncode == 0, page.stderr
        found |= exposed(page.stdout)
    assert queried - found == set()


def test_pod_readiness_flips_its_endpoint(detached: Detached) -> None:
    def ready() -> bool | None:
        slices = detached.kubectl("get", "endpointslices", "-n", "demo")["items"]
        found = [e["conditions"]["ready"] for s in slices for e in s["endpoints"]
                 if e["targetRef"]["name"] == "nginx-node1"]
        return found[0] if found else None
    assert "nginx-node1 on node1: unready" in detached.run("pod", "unready", "nginx-node1").stdout
    wait_for(lambda: ready() is False, within=30, what="endpoint unready")
    detached.run("pod", "ready", "nginx-node1")
    wait_for(lambda: ready() is True, within=30, what="endpoint ready again")
    assert "no lab pod 'nope'" in detached.run("pod", "ready", "nope", check=False).stderr


def test_node_down_cuts_the_wire_and_kills_its_programs_node_up_restores(
        detached: Detached) -> None:
    pinged = ["ip", "netns", "exec", f"{detached.prefix}-client", "ping", "-c1", "-W1",
              node_addresses(2)[0]]
    detached.run("fault", "node-down", "node2")
    assert subprocess.run(pinged, capture_output=True, check=False).returncode != 0
    procs = detached.state()["procs"]
    assert not {"agent-node2", "kube-proxy-node2", "scheduler-2"} & procs.keys()
    detached.run("fault", "node-up", "node2")
    assert subprocess.run(pinged, capture_output=True, check=False).returncode == 0
    assert {"agent-node2", "kube-proxy-node2", "scheduler-2"} <= detached.state()["procs"].keys()


def test_agent_kill(detached: Detached) -> None:
    pid = detached.state()["procs"]["agent-node1"]
    detached.run("fault", "agent-kill", "node1")
    assert "agent-node1" not in detached.state()["procs"]
    assert not Path(f"/proc/{pid}").exists()
    detached.run("fault", "node-up", "node1")
    assert "agent-node1" in detached.state()["procs"]


def test_api_cut_and_api_slow(detached: Detached) -> None:
    assert detached.node_kubectl("node1", "10s").returncode == 0
    detached.run("fault", "api-cut", "node1")
    assert detached.node_kubectl("node1", "10s").returncode != 0
    detached.run("fault", "api-slow", "node1")
    slow = detached.node_kubectl("node1", "1s")  # every answer now waits 2 s
    assert slow.returncode != 0 and TIMED_OUT.search(slow.stderr), slow.stderr
    assert detached.node_kubectl("node1", "20s").returncode == 0  # slow, not cut
    detached.run("fault", "node-up", "node1")
    assert detached.node_kubectl("node1", "1s").returncode == 0


def test_api_chaos(detached: Detached) -> None:
    """30% of requests through the node's proxy get a fault: some of 20 fail,
    most go through; node-up ends it."""
    detached.run("fault", "api-chaos", "node1")
    results = [detached.node_kubectl("node1", "10s").returncode for _ in range(20)]
    assert 0 < results.count(0) < 20, results
    detached.run("fault", "node-up", "node1")
    assert all(detached.node_kubectl("node1", "10s").returncode == 0 for _ in range(5))


def test_leader_kill_hands_the_lease_to_the_other_scheduler(detached: Detached) -> None:
    def holder() -> str:
        lease = detached.kubectl("get", "lease", "externalip-scheduler", "-n", "externalip")
        return str(lease["spec"].get("holderIdentity") or "")
    wait_for(lambda: holder() != "", within=60, what="a leader")
    before = holder()
    assert "the leader" in detached.run("fault", "leader-kill").stdout
    wait_for(lambda: holder() not in ("", before), within=90, what="another leader")
    for node in ("node1", "node2"):
        detached.run("fault", "node-up", node)  # the killed scheduler returns with its node


def test_bad_verbs_get_a_clear_error(detached: Detached) -> None:
    unknown = detached.run("fault", "melt", "node1", check=False)
    assert unknown.returncode == 1 and "unknown fault 'melt'" in unknown.stderr
    no_node = detached.run("fault", "node-down", "node9", check=False)
    assert no_node.returncode == 1 and "one of node1, node2" in no_node.stderr
