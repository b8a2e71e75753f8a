"""Migration from MetalLB, as docs/migrate-from-metallb.md tells a user to do
it: MetalLB v0.15.2 (L2) serves Services on the lab; `externalip migrate
metallb` writes the IpClaimPools; externalip starts next to MetalLB; MetalLB
goes. Every Service keeps its address, and a client polling each address the
whole time measures the outage (printed, and recorded in docs/benchmarks.md).

The Services cover each way MetalLB gives an address: its free choice (one
Service deleted first, so the survivors do not hold the addresses our
allocator would pick first), `metallb.io/loadBalancerIPs`, the older
`metallb.universe.tf/address-pool`, and two Services sharing one address
through `metallb.io/allow-shared-ip`.
"""

from __future__ import annotations

import datetime
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import yaml
from bench._common import Probe

from externalip_lab.lab import POOL6_NAME, POOL_NAME, Lab
from externalip_lab.metallb import MetalLB
from tests.e2e.conftest import NS, claims, ingress_ips, running_lab, service, wait_ingress

pytestmark = [pytest.mark.e2e, pytest.mark.netns]

RANGE = "192.0.2.200-192.0.2.220"
PINNED = "192.0.2.215"


@pytest.fixture(scope="module")
def bare() -> Iterator[Lab]:
    """A lab without externalip running: MetalLB will serve it first."""
    yield from running_lab(mode="none", schedulers=1)


def apply(lab: Lab, text: str) -> None:
    assert lab.cp is not None
    lab.cp.apply(text)


def metallb_services(lab: Lab) -> dict[str, list[str]]:
    """Services MetalLB serves, each way it can give an address -> their addresses."""
    apply(lab, service("gone"))
    wait_ingress(lab, "gone")
    apply(lab, service("plain"))
    apply(lab, service("pinned", annotations={"metallb.io/loadBalancerIPs": PINNED}))
    apply(lab, service("pooled", annotations={"metallb.universe.tf/address-pool": "lab"}))
    apply(lab, service("shared-a", annotations={"metallb.io/allow-shared-ip": "k"}))
    apply(lab, service("shared-b", port=8080, annotations={"metallb.io/allow-shared-ip": "k"}))
    assert lab.cp is not None
    lab.cp.kubectl("delete", "service", "gone", "-n", NS)
    names = ["plain", "pinned", "pooled", "shared-a", "shared-b"]
    out = {name: wait_ingress(lab, name) for name in names}
    assert out["pinned"] == [PINNED]
    assert out["shared-a"] == out["shared-b"]
    return out


def migrate(lab: Lab) -> str:
    """Step 1 of the guide: the IpClaimPools from MetalLB's objects, applied."""
    assert lab.cp is not None
    result = subprocess.run([sys.executable, "-m", "externalip", "migrate", "metallb",
                             "--kubeconfig", str(lab.cp.kubeconfig)],
                            capture_output=True, text=True, check=True, timeout=60)
    (pool,) = list(yaml.safe_load_all(result.stdout))
    assert pool["metadata"]["name"] == "lab"
    assert pool["spec"]["ranges"] == [["192.0.2.200", "192.0.2.220"]]
    apply(lab, result.stdout)
    return result.stderr


def test_services_keep_their_addresses_when_metallb_is_replaced(bare: Lab) -> None:
    lab = bare
    assert lab.cp is not None
    # the lab's own pools stand for nothing here: MetalLB's are migrated
    lab.cp.kubectl("delete", "ipclaimpool", POOL_NAME, POOL6_NAME)
    metallb = MetalLB(lab, [RANGE]).start()
    before = metallb_services(lab)
    addresses = sorted({ip for ips in before.values() for ip in ips})
    for ip in addresses:
        lab.wait_reachable(ip, within=60)
    probes = {ip: Probe(lab.topology.client, ip) for ip in addresses}
    try:
        for ip, probe in probes.items():  # every client is answered before the switch
            assert probe.first(lambda node: node is not None, 0.0, 30) is not None, ip
        start, wall = time.monotonic(), time.time()
        notes = migrate(lab)
        assert "not carried over" not in notes, notes
        # step 2: externalip next to MetalLB; it adopts every address as it is
        lab.mode = "claims"
        lab.start_scheduler(1)
        for node in lab.node_names:
            # MetalLB's speakers answer ARP for these addresses: the probe
            # before a first placement would refuse them (the guide says so)
            lab.start_agent(node, "--probe=false")
        wait_held(lab, addresses)
        held_at = time.monotonic()
        # step 3: MetalLB goes
        metallb.stop()
        stopped_at = time.monotonic()
        # step 4: the probe back on, one agent at a time (a rolled DaemonSet);
        # each restarted agent adopts the addresses it holds
        for node in lab.node_names:
            lab.stop_agent(node)
            lab.start_agent(node)
        wait_held(lab, addresses)
        time.sleep(5)  # long enough for a client that lost its answer to notice
        outages = {ip: probe.silence(start) for ip, probe in probes.items()}
    finally:
        for probe in probes.values():
            probe.close()
    after = {name: ingress_ips(lab, name) for name in before}
    assert after == before
    held = {c["spec"]["cidr"].split("/")[0]: c for c in claims(lab).values()}
    assert sorted(held) == addresses
    for ip in addresses:
        lab.wait_reachable(ip, within=10)
    worst = max(outages.values())
    for ip, probe in probes.items():  # when each silence fell, for the guide's figures
        print(ip, [(round(t - start, 2), node) for t, node in probe.events if t >= start])
    print(f"held at {held_at - start:.2f}s, MetalLB stopped at {stopped_at - start:.2f}s, "
          f"addresses added at {added_at(lab, wall)}")
    print(f"\nmigration outage per address (s): "
          f"{ {ip: round(s, 3) for ip, s in outages.items()} }; worst {worst:.3f}")
    assert worst < 5.0, outages


def wait_held(lab: Lab, addresses: list[str], within: float = 60) -> None:
    """Every address is held by one of our agents (its claim Ready)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        ready = {c["spec"]["cidr"].split("/")[0] for c in claims(lab).values()
                 if (c.get("status") or {}).get("ready")}
        if ready >= set(addresses):
            return
        time.sleep(0.2)
    raise AssertionError(f"not held within {within}s: {set(addresses) - ready}")


def added_at(lab: Lab, wall: float) -> dict[str, float]:
    """Seconds after `wall` at which an agent added each address (its log)."""
    out: dict[str, float] = {}
    for node in lab.node_names:
        for line in lab.log_of(f"agent-{node}").splitlines():
            if "address added" in line and "address=" in line:
                stamp = datetime.datetime.fromisoformat(line.split()[0].replace("Z", "+00:00"))
                ip = line.split("address=")[1].split("/")[0]
                out[ip] = round(stamp.timestamp() - wall, 2)
    return out
