"""Small and degraded clusters still fail over: two nodes, and a rack of five
losing two at once. Each test runs its own lab (the suite's has three nodes)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from externalip_lab.lab import Lab
from tests.e2e.conftest import claims, running_lab, service, wait_ingress, wait_reachable
from tests.e2e.test_failover import arp_responders, mac_of
from tests.helpers import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.netns]


@pytest.fixture
def two() -> Iterator[Lab]:
    yield from running_lab(2, schedulers=1)


@pytest.fixture
def five() -> Iterator[Lab]:
    yield from running_lab(5, schedulers=1)


def test_two_nodes_fail_over(two: Lab) -> None:
    assert two.cp is not None
    two.cp.apply(service("pair"))
    (ip,) = wait_ingress(two, "pair")
    node = wait_reachable(two, ip)
    two.kill_node(node)
    other = wait_reachable(two, ip, within=60, not_from=node)
    assert arp_responders(two, ip, 1.0) == {mac_of(two, other)}


def test_two_of_five_dying_together_fail_over(five: Lab) -> None:
    assert five.cp is not None
    names = [f"rack-{i}" for i in range(5)]
    for name in names:
        five.cp.apply(service(name))
    ips = [wait_ingress(five, name)[0] for name in names]
    holders = {ip: wait_reachable(five, ip) for ip in ips}
    # two nodes that hold something die at the same moment (a rack losing power)
    doomed = sorted(set(holders.values()))[:2]
    if len(doomed) < 2:
        doomed = [doomed[0], next(n for n in five.node_names if n != doomed[0])]
    for node in doomed:
        five.topology.link_down(node)
    for node in doomed:
        five.kill_node(node)
    for ip in ips:
        now = wait_reachable(five, ip, within=60, not_from=None)
        assert now not in doomed
        assert len(arp_responders(five, ip, 0.5)) == 1
    wait_for(lambda: all(c["spec"].get("nodeName") not in doomed
                         for c in claims(five).values()), within=30,
             what="every takeover recorded")
