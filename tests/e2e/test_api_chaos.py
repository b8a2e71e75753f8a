"""The whole system through a hostile API path (issue 12, item 9): every
node's API proxy (agents and schedulers alike, the schedulers run in the
nodes) answers a share of requests with an HTML 502, a 500, a 429 with
Retry-After, truncated JSON, a reset or 2 s of latency, while Services are
created and deleted. Afterwards: no program died, nothing was doubled (no
address given twice, one claim per Service), nothing was lost (every Service
has an address that answers), and one node holds and answers for each."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Iterator

import pytest
import yaml

from externalip_lab.apichaos import FAULTS, Chaos
from externalip_lab.faults import api_chaos
from externalip_lab.lab import Lab
from externalip_lab.topology import POOL4, ip
from tests.e2e.conftest import NS, claims, get, running_lab, service
from tests.e2e.test_failover import arp_responders, mac_of
from tests.helpers import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.netns]

CHAOS_SECONDS = 60.0
RATE = 0.25


@pytest.fixture
def chaotic() -> Iterator[Lab]:
    yield from running_lab(3, schedulers_in_nodes=True)


def ingress(lab: Lab) -> dict[str, list[str]]:
    items = get(lab, "services", "-n", NS, "-l", "chaos=yes")["items"]
    return {s["metadata"]["name"]: [i["ip"] for i in (s.get("status") or {})
                                    .get("loadBalancer", {}).get("ingress") or []]
            for s in items}


def churn(lab: Lab, seconds: float) -> set[str]:
    """Create two Services and delete the oldest every 2 s; the names left."""
    assert lab.cp is not None
    alive: list[str] = []
    n = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for _ in range(2):
            name = f"chaos-{n}"
            n += 1
            doc = yaml.safe_load(service(name))
            doc["metadata"]["labels"] = {"chaos": "yes"}
            lab.cp.apply(yaml.safe_dump(doc))
            alive.append(name)
        if len(alive) > 4:
            lab.cp.kubectl("delete", "service", "-n", NS, alive.pop(0), "--wait=false")
        time.sleep(2.0)
    return set(alive)


def pool_addresses_on(lab: Lab, node: str) -> set[str]:
    first, last = (int(ipaddress.ip_address(a)) for a in POOL4)
    out = ip("-n", lab.topology.node_ns(node), "-o", "-4", "addr", "show", "dev", "eth0").stdout
    found = {line.split()[3].split("/")[0] for line in out.splitlines()}
    return {a for a in found if first <= int(ipaddress.ip_address(a)) <= last}


def test_the_system_holds_its_invariants_through_a_hostile_api(chaotic: Lab) -> None:
    lab = chaotic
    chaos = {node: Chaos(rate=RATE, seed=i) for i, node in enumerate(lab.node_names)}
    for node, c in chaos.items():
        api_chaos(lab, node, c)
    alive = churn(lab, CHAOS_SECONDS)
    for node in lab.node_names:
        lab.heal(node)
    injected = {f: sum(c.injected.get(f, 0) for c in chaos.values()) for f in FAULTS}
    print("requests", sum(c.requests for c in chaos.values()), "injected", injected)
    assert all(injected.values()), injected  # every kind of fault reached the programs
    programs = {n: p for n, p in lab.procs.items() if n.startswith(("agent-", "scheduler-"))}
    assert set(programs) == {*(f"agent-{n}" for n in lab.node_names), "scheduler-1",
                             "scheduler-2"}
    died = {n: p.popen.returncode for n, p in programs.items() if p.popen.poll() is not None}
    assert not died, f"programs died: {died}"
    # converged: each Service one address, none given twice, one claim each
    wait_for(lambda: set(ingress(lab)) == alive and all(
        len(ips) == 1 for ips in ingress(lab).values()), within=120,
        what="every remaining Service with one address")
    addresses = [ips[0] for ips in ingress(lab).values()]
    assert len(set(addresses)) == len(addresses), f"an address given twice: {addresses}"
    wait_for(lambda: {c["spec"]["cidr"].split("/")[0] for c in claims(lab).values()}
             == set(addresses), within=120, what="exactly the Services' claims")
    for name, claim in claims(lab).items():
        assert len(claim["spec"]["services"]) == 1, (name, claim["spec"])
    # one holder per address in the kernels, and one MAC on the wire
    wait_for(lambda: all(len(lab.holders(a)) == 1 for a in addresses), within=120,
             what="one holder per address")
    held = {node: pool_addresses_on(lab, node) for node in lab.node_names}
    assert set().union(*held.values()) == set(addresses), held  # no ghost address
    for address in addresses:
        (holder,) = lab.holders(address)
        lab.wait_reachable(address, within=60)
        assert arp_responders(lab, address, 1.0) == {mac_of(lab, holder)}
