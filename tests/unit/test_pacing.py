"""Paced status writes (issue 16): the IpNode inventory and the pool counts."""

from __future__ import annotations

from dataclasses import replace

from externalip.core.claims import inventory_urgent
from externalip.core.model import NodeStatus
from externalip.core.pacing import Pacer


def test_first_change_at_once_then_one_write_per_interval() -> None:
    pacer = Pacer(10.0)
    assert pacer.delay(100.0) == 0.0  # nothing written yet
    pacer.wrote(100.0)
    assert pacer.delay(100.5) == 9.5
    assert pacer.delay(104.0, urgent=True) == 0.0
    assert pacer.delay(110.0) == 0.0
    pacer.wrote(125.0)
    assert pacer.delay(140.0) == 0.0  # quiet for longer than the interval: at once
    assert Pacer(0.0).delay(1.0) == 0.0  # 0: every change


def test_only_the_held_addresses_wait() -> None:
    written = NodeStatus(link="eth0", addresses=("192.0.2.1",), agent_version="1",
                         peers=("b",), node_addresses=("192.0.2.10",))
    assert inventory_urgent(None, written)  # creates the IpNode
    assert not inventory_urgent(written, replace(written, addresses=("192.0.2.1", "192.0.2.2")))
    assert not inventory_urgent(written, replace(written, addresses=()))
    for change in ({"peers": ()}, {"node_addresses": ("192.0.2.11",)}, {"link": "eth1"},
                   {"agent_version": "2"}):
        assert inventory_urgent(written, replace(written, addresses=(), **change)), change
