"""Probing before first placement (issue 12, item 11), in network namespaces:
the ARP probe and IPv6 DAD find the host that holds an address, and nothing
for a free one. The segment is test_net_fence's (the node holds V4 and V6)."""

from __future__ import annotations

import ipaddress
import json
import time

import pytest

from externalip.net.probe import dad_probe, probe_now
from externalip_lab.netns import entered, ip
from tests.integration.test_net_fence import V4, V6, Segment, seg  # noqa: F401

pytestmark = pytest.mark.netns


def node_mac(segment: Segment) -> bytes:
    info = json.loads(ip("-j", "link", "show", "dev", segment.dev, netns=segment.node).stdout)
    return bytes.fromhex(info[0]["address"].replace(":", ""))


def test_the_holder_of_an_address_is_found_and_a_free_one_is_free(seg: Segment) -> None:  # noqa: F811
    taken4, taken6 = ipaddress.ip_address(V4), ipaddress.ip_address(V6)
    node4, node6 = ipaddress.ip_address("192.0.2.10"), ipaddress.ip_address("2001:db8::10")
    free4, free6 = ipaddress.ip_address("192.0.2.51"), ipaddress.ip_address("2001:db8::51")
    with entered(seg.client):
        started = time.monotonic()
        found = probe_now(seg.cdev, [taken4, taken6, node4, node6, free4, free6])
        took = time.monotonic() - started
    mac = node_mac(seg)
    assert found == {taken4: mac, taken6: mac, node4: mac, node6: mac}
    assert took < 0.5  # two probes in a 0.2 s window


def test_dad_frame_is_what_the_kernel_accepts() -> None:
    """The frame's checksum and fields, checked against a hand-computed one."""
    frame = dad_probe(b"\x02\x00\x00\x00\x00\x01", ipaddress.IPv6Address("2001:db8::1:2:3"))
    assert frame[:6] == b"\x33\x33\xff\x02\x00\x03"  # solicited-node group's MAC
    assert frame[14 + 24:14 + 40] == ipaddress.IPv6Address("ff02::1:ff02:3").packed
    assert frame[14 + 7] == 255  # hop limit
    assert frame[54] == 135 and frame[56:58] != b"\0\0"  # an NS with a checksum
