"""Pods as network namespaces behind a node, and what their answers tell.

Each node namespace gets a bridge `pods` holding the gateway of its pod
subnet (198.18.<n>.0/24 and 2001:db8:18:<n>::/64, RFC 2544 and
documentation ranges); each pod is a namespace whose `eth0` is plugged into
that bridge. Nodes route the other nodes' pod subnets through their node
addresses, as a flat routed pod network (e.g. Calico without overlay) would.

A pod runs `externalip_lab.podserver`, which answers `pod=.. node=..
client=..`: the client address it saw tells which node took the traffic in,
because kube-proxy masquerades external traffic (policy Cluster) to the
forwarding node's address, and keeps the client's (policy Local).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from externalip_lab.topology import SUBNET4, SUBNET6, ip, node_addresses, sysctl

POD_CIDR4, POD_CIDR6 = "198.18.0.0/16", "2001:db8:18::/48"
BRIDGE = "pods"
MAX_NODES = 89  # node n has host number 10 + n; the client's is 100


def pod_subnets(node_index: int) -> tuple[str, str]:
    return f"198.18.{node_index}.0/24", f"2001:db8:18:{node_index:x}::/64"


def pod_addresses(node_index: int, slot: int) -> tuple[str, str]:
    """Slot 0 is the node's gateway on its pod bridge; pods use 1 and up."""
    return f"198.18.{node_index}.{1 + slot}", f"2001:db8:18:{node_index:x}::{1 + slot:x}"


def node_index(name: str) -> int:
    return int(name.removeprefix("node"))


def wire_node(netns: str, index: int, nodes: int) -> None:
    """The node's pod bridge and gateway, forwarding on, routes to other nodes' pods."""
    sysctl(netns, "net.ipv4.ip_forward", "1")
    sysctl(netns, "net.ipv6.conf.all.forwarding", "1")
    ip("-n", netns, "link", "add", BRIDGE, "type", "bridge")
    gw4, gw6 = pod_addresses(index, 0)
    ip("-n", netns, "addr", "add", f"{gw4}/24", "dev", BRIDGE)
    ip("-n", netns, "addr", "add", f"{gw6}/64", "dev", BRIDGE, "nodad")
    ip("-n", netns, "link", "set", BRIDGE, "up")
    for other in range(1, nodes + 1):
        if other != index:
            sub4, sub6 = pod_subnets(other)
            via4, via6 = node_addresses(other)
            ip("-n", netns, "route", "add", sub4, "via", via4)
            ip("-n", netns, "route", "add", sub6, "via", via6)


def attach_pod(node_ns: str, pod_ns: str, index: int, slot: int) -> tuple[str, str]:
    """Create the pod's namespace on the node's bridge; its (IPv4, IPv6)."""
    ip("netns", "add", pod_ns)
    ip("-n", node_ns, "link", "add", f"veth{slot}", "type", "veth", "peer", "name", "eth0",
       "netns", pod_ns)
    ip("-n", node_ns, "link", "set", f"veth{slot}", "master", BRIDGE, "up")
    sysctl(pod_ns, "net.ipv6.conf.all.accept_dad", "0")
    sysctl(pod_ns, "net.ipv6.conf.default.accept_dad", "0")
    v4, v6 = pod_addresses(index, slot)
    gw4, gw6 = pod_addresses(index, 0)
    ip("-n", pod_ns, "link", "set", "lo", "up")
    ip("-n", pod_ns, "addr", "add", f"{v4}/24", "dev", "eth0")
    ip("-n", pod_ns, "addr", "add", f"{v6}/64", "dev", "eth0", "nodad")
    ip("-n", pod_ns, "link", "set", "eth0", "up")
    ip("-n", pod_ns, "route", "add", "default", "via", gw4)
    ip("-n", pod_ns, "-6", "route", "add", "default", "via", gw6)
    return v4, v6


def node_of_address(address: str) -> str | None:
    """The lab node owning a node or pod-gateway address, None for anything else."""
    addr = ipaddress.ip_address(address)
    if addr.version == 4:
        packed = addr.packed
        if addr in ipaddress.ip_network(SUBNET4) and 11 <= packed[3] <= 10 + MAX_NODES:
            return f"node{packed[3] - 10}"
        if addr in ipaddress.ip_network(POD_CIDR4) and packed[3] == 1:
            return f"node{packed[2]}"
        return None
    low = int(addr) & 0xFFFF
    if addr in ipaddress.ip_network(SUBNET6) and 11 <= low <= 10 + MAX_NODES:
        return f"node{low - 10}"
    if addr in ipaddress.ip_network(POD_CIDR6) and low == 1:
        return f"node{(int(addr) >> 64) & 0xFFFF}"
    return None


@dataclass(frozen=True)
class Answer:
    """One answer of a lab pod, as the client got it."""

    pod: str
    node: str  # where the pod runs
    client: str  # the source address the pod saw

    @classmethod
    def parse(cls, text: str) -> Answer | None:
        fields = dict(part.split("=", 1) for part in text.split() if "=" in part)
        if not {"pod", "node", "client"} <= fields.keys():
            return None
        return cls(fields["pod"], fields["node"], fields["client"])

    @property
    def via(self) -> str:
        """The node that took the client's traffic in: the masquerading node, or
        the pod's own node when the client's address arrived unchanged."""
        return node_of_address(self.client) or self.node
