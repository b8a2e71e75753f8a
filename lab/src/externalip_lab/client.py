"""The client's view of a lab: what a user on the segment gets from a VIP,
and which nodes hold it. A mixin of `Lab`, which provides the topology."""

from __future__ import annotations

import subprocess
import time

from externalip_lab.pods import Answer
from externalip_lab.topology import Topology, ip


class ClientView:
    topology: Topology

    @property
    def node_names(self) -> list[str]:
        return self.topology.node_names()

    # --- the client's view -------------------------------------------------
    def client_answer(self, ip: str, timeout: float = 1.0) -> Answer | None:
        """GET http://ip/ from the client namespace: the pod's answer, or None."""
        host = f"[{ip}]" if ":" in ip else ip
        result = subprocess.run(
            ["ip", "netns", "exec", self.topology.client, "curl", "-s", "-g",
             "--max-time", str(timeout), f"http://{host}/"],
            capture_output=True, text=True, check=False)
        return Answer.parse(result.stdout) if result.returncode == 0 else None

    def client_get(self, ip: str, timeout: float = 1.0) -> str | None:
        """The node that took the client's request for ip in, or None."""
        answer = self.client_answer(ip, timeout)
        return answer.via if answer else None

    def wait_answer(self, ip: str, within: float = 60.0,
                    not_from: str | None = None) -> Answer:
        """Poll from the client until ip answers (through a node other than not_from)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            answer = self.client_answer(ip, timeout=0.5)
            if answer and answer.via != not_from:
                return answer
            time.sleep(0.05)
        raise TimeoutError(f"{ip} not reachable from the client within {within}s "
                           f"(held now by {self.holders(ip) or 'no node'})")

    def wait_reachable(self, ip: str, within: float = 60.0,
                       not_from: str | None = None) -> str:
        """The node that took the first answered request in."""
        return self.wait_answer(ip, within, not_from).via

    def wait_settled(self, ip: str, within: float = 60.0) -> str:
        """The one node holding ip, once the client's requests go through it.

        An address a deleted Service just freed comes back to the next Service.
        Until the new holder's gratuitous ARP reaches the client, the client's
        neighbour cache still names the old holder, whose kube-proxy forwards
        to the new Service all the same: the first answer can come through a
        node that no longer holds the address."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            holders = self.holders(ip)
            if len(holders) == 1 and self.client_get(ip, timeout=0.5) == holders[0]:
                return holders[0]
            time.sleep(0.05)
        raise TimeoutError(f"{ip} not held by one node the client reaches within {within}s "
                           f"(held now by {self.holders(ip) or 'no node'})")

    def holders(self, address: str) -> list[str]:
        """Nodes whose eth0 or lo carries the address right now."""
        found = []
        for node in self.node_names:
            out = ip("-n", self.topology.node_ns(node), "-o", "addr", "show").stdout
            if any(f" {address}/" in line for line in out.splitlines()):
                found.append(node)
        return found

