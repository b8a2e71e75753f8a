"""Special addresses are refused at every level of the core (issue 12, item 6)."""

from __future__ import annotations

import ipaddress

import pytest

from externalip.core.desired import plan
from externalip.core.holding import Have, Want
from externalip.core.holding import plan as hold
from externalip.core.model import Pool, PoolSpec
from externalip.core.pools import PoolError, build
from externalip.core.services import ServiceView
from externalip.core.special import special
from tests.unit.test_core_desired import converge, lb, world

SPECIAL = ["::1", "::", "0.0.0.1", "0.1.2.3", "127.0.0.1", "127.0.0.2", "224.0.0.1",
           "239.1.2.3", "255.255.255.255", "240.0.0.1", "169.254.0.1", "fe80::99",
           "ff02::1", "::ffff:192.0.2.1"]


@pytest.mark.parametrize("text", SPECIAL)
def test_special_addresses_are_named(text: str) -> None:
    assert special(ipaddress.ip_address(text))


@pytest.mark.parametrize("text", ["192.0.2.1", "198.51.100.255", "2001:db8::1", "10.0.0.1"])
def test_ordinary_addresses_are_not_special(text: str) -> None:
    assert special(ipaddress.ip_address(text)) == ""


def test_pools_never_hand_out_special_addresses() -> None:
    wide = build(Pool("wide", PoolSpec(cidr="0.0.0.0/1")))  # 0/8 and 127/8 inside
    assert not wide.contains(ipaddress.ip_address("0.0.0.1"))
    assert not wide.contains(ipaddress.ip_address("127.0.0.1"))
    assert wide.first_free(set()) == ipaddress.ip_address("1.0.0.0")
    assert wide.size() == 2**31 - 2 * 2**24
    high = build(Pool("high", PoolSpec(cidr="223.255.255.0/24",
                                       ranges=(("223.255.255.250", "223.255.255.255"),))))
    assert high.size() == 6
    with pytest.raises(PoolError, match="no usable address"):
        build(Pool("mc", PoolSpec(cidr="224.0.0.0/24")))
    with pytest.raises(PoolError, match="no usable address"):
        build(Pool("lo6", PoolSpec(cidr="::1/128")))
    with pytest.raises(PoolError, match="no usable address"):
        build(Pool("ll", PoolSpec(cidr="169.254.0.0/16")))


@pytest.mark.parametrize("text", SPECIAL)
def test_scheduler_refuses_special_external_and_requested_ips(text: str) -> None:
    ext = ServiceView("ns", "ext", external_ips=(text,))
    requested = lb("req", requested=(text,),
                   families=("IPv6",) if ":" in text else ("IPv4",))
    p = plan(world([ext, requested]))
    assert not p.create
    reasons = {(e.service, e.type, e.reason) for e in p.events}
    assert ("ns/ext", "Warning", "SpecialAddress") in reasons
    assert ("ns/req", "Warning", "SpecialAddress") in reasons
    w = converge(world([ext, requested]))
    assert not w.claims and w.services["ns/req"].ingress == ()


def _want(text: str, link: str = "eth0") -> Want:
    return Want(ipaddress.ip_interface(text), link, (f"claim-{text}",))


@pytest.mark.parametrize("text", [*SPECIAL, "192.0.2.0", "192.0.2.255", "2001:db8:1::"])
def test_agent_refuses_special_and_subnet_edge_addresses(text: str) -> None:
    """The last line: whatever a claim or a Service says, these never reach a link."""
    haves = [Have(ipaddress.ip_interface("192.0.2.11/24"), "eth0", ours=False),
             Have(ipaddress.ip_interface("2001:db8:1::11/64"), "eth0", ours=False)]
    ok = _want("192.0.2.200/32")
    todo = hold([_want(text + ("/128" if ":" in text else "/32")), ok], haves, {"eth0"})
    assert todo.add == (ok,)
    (reason,) = todo.refused.values()
    assert ipaddress.ip_address(text).compressed in reason
    assert "refusing to hold" in reason


def test_subnet_edges_of_point_to_point_links_are_ordinary() -> None:
    haves = [Have(ipaddress.ip_interface("198.51.100.0/31"), "eth1", ours=False)]
    want = _want("198.51.100.1/32", "eth1")
    assert hold([want], haves, {"eth1"}).add == (want,)
