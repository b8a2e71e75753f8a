"""The lab's network: a bridge in a `lan` namespace, N node namespaces and a
client namespace on it, each through a veth pair created directly inside the
namespaces (nothing is ever configured in the root namespace).

Addresses come from documentation ranges only: nodes and client in
192.0.2.0/24 and 2001:db8::/64, the same L2 segment the VIPs are announced on.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field

from externalip import log

_log = log.get(__name__)

SUBNET4, SUBNET6 = "192.0.2.0/24", "2001:db8::/64"
CLIENT4, CLIENT6 = "192.0.2.100", "2001:db8::100"
POOL4 = ("192.0.2.200", "192.0.2.250")
POOL6 = ("2001:db8::200", "2001:db8::2ff")


def node_addresses(index: int) -> tuple[str, str]:
    return f"192.0.2.{10 + index}", f"2001:db8::{10 + index:x}"


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result


def sysctl(netns: str, key: str, value: str) -> None:
    subprocess.run(["ip", "netns", "exec", netns, "sysctl", "-qw", f"{key}={value}"],
                   check=True, capture_output=True)


@dataclass
class Topology:
    prefix: str
    nodes: int
    extra: list[str] = field(default_factory=list)

    @property
    def lan(self) -> str:
        return f"{self.prefix}-lan"

    @property
    def client(self) -> str:
        return f"{self.prefix}-client"

    def node_ns(self, node: str) -> str:
        return f"{self.prefix}-{node}"

    def node_names(self) -> list[str]:
        return [f"node{i}" for i in range(1, self.nodes + 1)]

    def all_namespaces(self) -> list[str]:
        nodes = (self.node_ns(n) for n in self.node_names())
        return [self.lan, self.client, *nodes, *self.extra]

    def create(self) -> None:
        ip("netns", "add", self.lan)
        ip("-n", self.lan, "link", "add", "br0", "type", "bridge")
        ip("-n", self.lan, "link", "set", "br0", "up")
        ip("-n", self.lan, "link", "set", "lo", "up")
        for i, node in enumerate(self.node_names(), start=1):
            v4, v6 = node_addresses(i)
            self._attach(self.node_ns(node), f"v{node}", v4, v6)
            _log.info("lab node network ready", node=node, ipv4=v4, ipv6=v6)
        self._attach(self.client, "vclient", CLIENT4, CLIENT6)

    def attach_extra(self, netns: str, lan_end: str, v4: str, v6: str) -> None:
        """Another namespace on the segment (e.g. a router); destroy() removes it."""
        self.extra.append(netns)
        self._attach(netns, lan_end, v4, v6)

    def _attach(self, netns: str, lan_end: str, v4: str, v6: str) -> None:
        ip("netns", "add", netns)
        ip("-n", self.lan, "link", "add", lan_end, "type", "veth", "peer", "name", "eth0",
           "netns", netns)
        ip("-n", self.lan, "link", "set", lan_end, "master", "br0", "up")
        # No DAD on the lab's own addresses: they must be usable at once.
        sysctl(netns, "net.ipv6.conf.all.accept_dad", "0")
        sysctl(netns, "net.ipv6.conf.default.accept_dad", "0")
        ip("-n", netns, "link", "set", "lo", "up")
        ip("-n", netns, "addr", "add", f"{v4}/24", "dev", "eth0")
        ip("-n", netns, "addr", "add", f"{v6}/64", "dev", "eth0", "nodad")
        ip("-n", netns, "link", "set", "eth0", "up")

    def link_down(self, node: str) -> None:
        """Node death as the wire sees it: its cable pulled."""
        ip("-n", self.lan, "link", "set", f"v{node}", "down")

    def link_up(self, node: str) -> None:
        ip("-n", self.lan, "link", "set", f"v{node}", "up")

    def destroy(self) -> None:
        for netns in reversed(self.all_namespaces()):
            ip("netns", "del", netns, check=False)


def leftover_namespaces(prefix: str) -> list[str]:
    out = ip("netns", "list").stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(prefix + "-")]
