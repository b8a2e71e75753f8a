"""The image and the chart together, as users install them: `helm install`
against the lab's API server, every pod started from its spec with podman
(imagepods.py), on three nodes in network namespaces.

Checked: a LoadBalancer Service gets an address and answers the client; the
agent holds only NET_ADMIN and NET_RAW, the scheduler nothing and runs as
non-root, both on a read-only root; the probes pass; a node's death moves the
address; `helm upgrade` to a re-tagged image rolls the agents node by node,
then the schedulers, and `helm rollback` back, while a client polling every
Service loses no request and no address changes node.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator

import pytest

from externalip_lab import podman
from externalip_lab.lab import Lab
from externalip_lab.poller import Poller
from tests.e2e.conftest import NS, ingress_ips, running_lab, service

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(shutil.which("podman") is None,
                                                  reason="podman is installed by make deps")]

AGENT_CAPS = {"NET_ADMIN", "NET_RAW"}


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    image = podman.build_image()  # seconds when make deps built it already
    # the chart's defaults: the agents' heartbeats on the data plane see a
    # node's death in about a second, long before its Lease lapses
    yield from running_lab(from_image=image)


def proc_status(lab: Lab, pod: str) -> dict[str, str]:
    assert lab.image is not None
    with open(f"/proc/{podman.pid(lab.image.container(pod))}/status") as status:
        return dict(line.rstrip("\n").split(":\t", 1) for line in status if ":\t" in line)


def test_pods_run_with_the_charts_security_context_and_pass_their_probes(lab: Lab) -> None:
    assert lab.image is not None
    pods = lab.image.pods
    assert sorted(pods) == ["agent-node1", "agent-node2", "agent-node3",
                            "scheduler-1", "scheduler-2"]
    deadline = time.monotonic() + 30  # liveness starts after its initialDelaySeconds
    while any(p.passes["liveness"] == 0 for p in pods.values()) and time.monotonic() < deadline:
        time.sleep(0.5)
    for name, pod in pods.items():
        assert pod.ready and pod.passes["readiness"] >= 1, name
        # a start slower than the liveness probe's delay + threshold (seen at
        # load average 65 on 2 cores) earns a restart, as from a kubelet; what
        # must hold is that the running container passes its probes
        assert pod.passes["liveness"] >= 1 and pod.failures["liveness"] == 0, name
        assert podman.effective_capabilities(lab.image.container(name)) == (
            AGENT_CAPS if name.startswith("agent") else set()), name
        status = proc_status(lab, name)
        assert status["NoNewPrivs"].strip() == "1", name
        uid = status["Uid"].split()[0]
        assert uid == ("0" if name.startswith("agent") else "65532"), name
    # the root filesystem is read-only, even for the agent's uid 0
    touch = podman.podman("exec", lab.image.container("agent-node1"), "touch", "/probe",
                          check=False)
    assert touch.returncode != 0 and "Read-only file system" in touch.stderr


def test_service_from_the_image_answers_and_moves_when_its_node_dies(lab: Lab) -> None:
    assert lab.cp is not None and lab.image is not None
    lab.cp.apply(service("image-web"))
    ip = wait_ingress(lab, "image-web")
    node = lab.wait_reachable(ip, within=30)
    lab.kill_node(node)
    try:
        moved = lab.wait_reachable(ip, within=60, not_from=node)
        assert moved != node
    finally:
        lab.restore_node(node)
        lab.image.wait_ready([f"agent-{node}"])
    lab.cp.kubectl("delete", "service", "image-web", "-n", NS)


def wait_ingress(lab: Lab, name: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while not ingress_ips(lab, name):
        assert time.monotonic() < deadline, f"{name} got no address"
        time.sleep(0.2)
    return ingress_ips(lab, name)[0]


def roll(lab: Lab, change: str, ips: list[str]) -> Poller:
    assert lab.image is not None
    with Poller(lab, ips) as poller:
        time.sleep(1.0)
        replaced = lab.image.roll(None if change == "rollback" else change)
        time.sleep(2.0)
    # the agents one node at a time, then the schedulers
    assert replaced[:3] == ["agent-node1", "agent-node2", "agent-node3"], replaced
    assert len(replaced) == 5 and all(r.startswith("scheduler-") for r in replaced[3:]), replaced
    return poller


@pytest.mark.timeout(600)  # two rollouts of five pods: about 4 min at load average 60
def test_rolling_upgrade_and_rollback_lose_no_request(lab: Lab,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert lab.cp is not None and lab.image is not None
    names = ["roll-a", "roll-b", "roll-c"]
    for name in names:
        lab.cp.apply(service(name))
    ips = [wait_ingress(lab, name) for name in names]
    for ip in ips:
        lab.wait_reachable(ip, within=30)
    upgraded = lab.image.image.rsplit(":", 1)[0] + ":rolled"
    podman.tag(lab.image.image, upgraded)
    results = {}
    for change in (upgraded, "rollback"):
        poller = roll(lab, change, ips)
        results[change] = poller
        assert poller.lost == [], f"{change}: requests lost {poller.lost}"
        assert all(len(nodes) == 1 for nodes in poller.nodes.values()), poller.nodes
    images = {p.container["image"] for p in lab.image.pods.values()}
    assert images == {lab.image.image}, "rollback returns every pod to the first image"
    with capsys.disabled():
        for change, poller in results.items():
            print(f"\n[image] {'rollback' if change == 'rollback' else 'upgrade'}: "
                  f"{poller.report()}")
