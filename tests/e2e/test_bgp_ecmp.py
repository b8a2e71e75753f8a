"""The seed's ECMP/BGP scheme: simple mode with --iface=lo on two nodes, BIRD
exporting the /32s, a router with both next hops, the client through it to a
pod, through kube-proxy on whichever node the router chose."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from externalip_lab.bgp import BgpFabric
from externalip_lab.lab import Lab
from externalip_lab.topology import leftover_namespaces, node_addresses
from tests.e2e.conftest import APP, NS, service
from tests.helpers import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.netns]

VIP = "203.0.113.10"


@pytest.fixture
def ecmp_lab() -> Iterator[tuple[Lab, BgpFabric]]:
    lab = Lab(nodes=2, mode="simple", agent_args=("--iface=lo",), apps=((NS, APP),))
    fabric: BgpFabric | None = None
    try:
        lab.start()
        fabric = BgpFabric(lab.topology, lab.dir / "bgp",
                           {n: node_addresses(i)[0] for i, n in enumerate(lab.node_names, 1)})
        fabric.start()
        fabric.wait_established()
        yield lab, fabric
    finally:
        if fabric is not None:
            fabric.stop()
        lab.stop()
        assert leftover_namespaces(lab.prefix) == []


def test_router_has_both_next_hops_and_the_client_gets_through(
        ecmp_lab: tuple[Lab, BgpFabric]) -> None:
    lab, fabric = ecmp_lab
    assert lab.cp is not None
    lab.cp.ensure_namespace(NS)
    lab.cp.apply(service("ecmp", lb=False, external_ips=[VIP]))
    wait_for(lambda: sorted(lab.holders(VIP)) == lab.node_names, within=30,
             what="VIP on lo of both nodes")
    nodes = {node_addresses(i)[0] for i in (1, 2)}
    wait_for(lambda: fabric.next_hops(VIP) == nodes, within=30, what="two ECMP next hops")
    print(fabric.router_routes(VIP))
    wait_for(lambda: lab.client_get(VIP) in lab.node_names, within=10, what="client reaches")
    answers = [lab.client_answer(VIP) for _ in range(10)]
    assert all(a is not None and a.pod == f"{APP}-{a.node}" for a in answers), answers
    lab.cp.kubectl("delete", "service", "ecmp", "-n", NS)
    wait_for(lambda: not fabric.next_hops(VIP), within=30, what="route withdrawn")
