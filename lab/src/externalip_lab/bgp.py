"""The seed's ECMP/BGP scheme in the lab, with the real BIRD 2.

Simple mode runs with --iface=lo on some nodes, so every External IP is a
/32 on their loopback. A BIRD speaker per node exports exactly those /32s
(nothing else on lo) to a "router" namespace on the same segment, whose BIRD
installs one multipath route per IP (`merge paths`): the top-of-rack router of
the seed's docs. The client routes the VIP range through the router.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from externalip_lab.processes import stop_process
from externalip_lab.topology import CLIENT4, Topology, ip, sysctl

ROUTER4 = "192.0.2.1"
ROUTER_AS, NODE_AS = 65000, 65001
VIP_RANGE = "203.0.113.0/24"


def node_config(router_id: str) -> str:
    return f"""
router id {router_id};
protocol device {{ scan time 1; }}
protocol direct {{ ipv4; interface "lo"; }}
protocol bgp tor {{
  local {router_id} as {NODE_AS};
  neighbor {ROUTER4} as {ROUTER_AS};
  hold time 3; keepalive time 1; connect retry time 1;
  ipv4 {{ import none; export where net ~ [ {VIP_RANGE}{{32,32}} ]; }};
}}
"""


def router_config(neighbours: list[str]) -> str:
    peers = "".join(f"""
protocol bgp node{i} {{
  local {ROUTER4} as {ROUTER_AS};
  neighbor {addr} as {NODE_AS};
  hold time 3; keepalive time 1; connect retry time 1;
  ipv4 {{ import where net ~ [ {VIP_RANGE}{{32,32}} ]; export none; }};
}}
""" for i, addr in enumerate(neighbours, start=1))
    return f"""
router id {ROUTER4};
protocol device {{ scan time 1; }}
protocol kernel {{ merge paths on; ipv4 {{ export all; }}; }}
{peers}
"""


@dataclass
class BgpFabric:
    """A router namespace with BIRD, and a BIRD speaker in each chosen node."""

    topology: Topology
    workdir: Path
    speakers: dict[str, str]  # node -> its IPv4 address
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def router(self) -> str:
        return f"{self.topology.prefix}-router"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.topology.attach_extra(self.router, "vrouter", ROUTER4, "2001:db8::1")
        sysctl(self.router, "net.ipv4.ip_forward", "1")
        ip("-n", self.topology.client, "route", "add", VIP_RANGE, "via", ROUTER4)
        self._bird(self.router, "router", router_config(list(self.speakers.values())))
        for node, address in self.speakers.items():
            self._bird(self.topology.node_ns(node), node, node_config(address))

    def _bird(self, netns: str, name: str, config: str) -> None:
        conf = self.workdir / f"bird-{name}.conf"
        conf.write_text(config)
        log = open(self.workdir / f"bird-{name}.log", "ab")  # noqa: SIM115
        self.procs[name] = subprocess.Popen(
            ["ip", "netns", "exec", netns, "bird", "-f", "-c", str(conf),
             "-s", str(self.workdir / f"bird-{name}.ctl"), "-P", str(self.workdir / f"{name}.pid")],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def birdc(self, name: str, *command: str) -> str:
        return subprocess.run(["birdc", "-s", str(self.workdir / f"bird-{name}.ctl"), *command],
                              capture_output=True, text=True, check=False).stdout

    def router_routes(self, prefix: str) -> str:
        """The router's kernel route for prefix (shows every ECMP next hop)."""
        return ip("-n", self.router, "route", "show", prefix).stdout

    def next_hops(self, prefix: str) -> set[str]:
        out = self.router_routes(prefix)
        return {word_after(line, "via") for line in out.splitlines() if " via " in line}

    def wait_established(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.birdc("router", "show", "protocols")
            if status.count("Established") >= len(self.speakers):
                return
            time.sleep(0.2)
        raise TimeoutError(f"BGP sessions not established:\n{status}")

    def stop(self) -> None:
        for proc in self.procs.values():
            stop_process(proc, wait=5)
        self.procs.clear()
        ip("netns", "del", self.router, check=False)


def word_after(line: str, word: str) -> str:
    words = line.split()
    return words[words.index(word) + 1]


__all__ = ["CLIENT4", "BgpFabric"]
