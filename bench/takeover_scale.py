"""A node holding a third of 10,000 claims dies: when does the last of its addresses answer?

Run as root:  .venv/bin/python bench/takeover_scale.py [--claims 10000] [--runs 5]

Issue 11, criterion 3. A lab with 3 nodes, the agents as the lab runs them
(data-plane failover, default settings) and no scheduler: the claims are
written directly, as the scheduler would write them, each on one node with
the two others as ordered standbys (alternating, so a dead node's claims
split over both). Each run kills the node holding the claims of one third
(`lab fault node-down`: link down, agent SIGKILL, API proxy stopped) and a
prober in the client namespace asks "who has" for EVERY one of its addresses
in rounds (all of them, then the next round 100 ms after the last started),
recording when each first answers from another MAC. It prints, per run, the
first, median and last address answering after the kill, and when the API
recorded the last move (claim status holder); then median and p99 of "the
last address answers" over the runs. Between runs the node comes back and
its claims are written again for it (deleted once the standbys let go, then
created), so every run kills a node holding the same third.
"""

from __future__ import annotations

import argparse
import ipaddress
import socket
import statistics
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from _common import Api, enter_netns, p99

from externalip.core.model import ClaimSpec, claim_labels
from externalip_lab.lab import Lab, progress
from externalip_lab.topology import CLIENT4, ip

CLAIMS = "/apis/ipcontroller.ext/v1/ipclaims"
ROUND = 0.1  # seconds between the starts of two probe rounds (the resolution)
# Outside the lab's pod subnets (198.18.0.0/16) and Service range (198.19.0.0/18):
# 10,000 addresses from here would otherwise shadow pods and cluster IPs.
FIRST = ipaddress.ip_address("198.19.128.1")


def claim_body(name: str, cidr: str, node: str, standbys: list[str]) -> dict[str, Any]:
    spec = {"cidr": cidr, "nodeName": node, "standbys": standbys}
    return {"apiVersion": "ipcontroller.ext/v1", "kind": "IpClaim",
            "metadata": {"name": name, "labels": claim_labels(ClaimSpec.from_dict(spec))},
            "spec": spec}


def placement(nodes: list[str], count: int) -> dict[str, tuple[str, str, list[str]]]:
    """name -> (cidr, node, standbys): round robin, standbys alternating."""
    out = {}
    for i in range(count):
        node = nodes[i % len(nodes)]
        others = [n for n in nodes if n != node]
        if (i // len(nodes)) % 2:
            others.reverse()
        out[f"tk-{i}"] = (f"{FIRST + i}/32", node, others)
    return out


def write_claims(api: Api, claims: dict[str, tuple[str, str, list[str]]]) -> None:
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda item: api.create(CLAIMS, claim_body(item[0], *item[1])),
                      claims.items()))


def delete_claims(api: Api, names: list[str]) -> None:
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda name: api.delete(f"{CLAIMS}/{name}"), names))


def holders(api: Api) -> dict[str, str]:
    items = api.request("GET", CLAIMS)["items"]
    return {c["metadata"]["name"]: (c.get("status") or {}).get("holder") or "" for c in items
            if (c.get("status") or {}).get("ready")}


def on_node(lab: Lab, node: str) -> set[str]:
    """The IPv4 addresses on the node's eth0, as the kernel has them."""
    out = ip("-n", lab.topology.node_ns(node), "-o", "-4", "addr", "show", "dev", "eth0").stdout
    return {line.split()[3].split("/")[0] for line in out.splitlines()}


def settle(lab: Lab, api: Api, claims: dict[str, tuple[str, str, list[str]]],
           within: float) -> None:
    """Every address on its node (and on no other), then every status written."""
    start = time.monotonic()
    want = {n: {c.split("/")[0] for c, node, _ in claims.values() if node == n}
            for n in lab.node_names}
    while time.monotonic() - start < within:
        have = {n: on_node(lab, n) for n in lab.node_names}
        stray = {a for n in lab.node_names for a in have[n]
                 if any(a in want[o] for o in lab.node_names if o != n)}
        if all(want[n] <= have[n] for n in lab.node_names) and not stray:
            break
        time.sleep(1)
    else:
        raise RuntimeError(f"addresses not on their nodes within {within:.0f}s")
    progress(f"addresses on their nodes after {time.monotonic() - start:.1f}s")
    while time.monotonic() - start < within:
        held = holders(api)
        if all(held.get(name) == spec[1] for name, spec in claims.items()):
            progress(f"statuses written after {time.monotonic() - start:.1f}s")
            return
        time.sleep(2)
    progress(f"statuses still not all written after {within:.0f}s; going on")


class Prober:
    """In the client namespace: ARP requests for every address, in rounds;
    `answered[ip] = (t, mac)`: the first answer from a MAC other than `old`
    (or, with old None, from anyone) at or after `after`."""

    def __init__(self, netns: str, addresses: list[str], old: str | None, after: float) -> None:
        self.answered: dict[str, tuple[float, str]] = {}
        self._targets = {socket.inet_aton(a): a for a in addresses}
        self._old, self._after = old, after
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(netns,), daemon=True)
        self._thread.start()

    def _run(self, netns: str) -> None:
        enter_netns(netns)
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806)) as s:
            s.bind(("eth0", 0))
            mac: bytes = s.getsockname()[4]
            head = (b"\xff" * 6 + mac + struct.pack("!H", 0x0806)
                    + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1)
                    + mac + socket.inet_aton(CLIENT4) + b"\0" * 6)
            s.setblocking(False)
            while not self._stop.is_set() and len(self.answered) < len(self._targets):
                start = time.monotonic()
                for packed, address in self._targets.items():
                    if address not in self.answered:
                        s.send(head + packed)
                    self._read(s)
                while time.monotonic() - start < ROUND:
                    self._read(s)
                    time.sleep(0.001)

    def _read(self, s: socket.socket) -> None:
        while True:
            try:
                frame = s.recv(128)
            except BlockingIOError:
                return
            now = time.monotonic()
            if frame[20:22] != b"\x00\x02" or now < self._after:
                continue
            address = self._targets.get(frame[28:32])
            sender = frame[22:28].hex(":")
            if address and sender != self._old and address not in self.answered:
                self.answered[address] = (now, sender)

    def wait(self, timeout: float) -> None:
        self._thread.join(timeout)
        self._stop.set()
        self._thread.join(2)


def one_run(lab: Lab, api: Api, claims: dict[str, tuple[str, str, list[str]]],
            victim: str) -> tuple[list[float], float | None]:
    mine = {name: spec for name, spec in claims.items() if spec[1] == victim}
    addresses = [spec[0].split("/")[0] for spec in mine.values()]
    # Before: every address answers, from the victim.
    before = Prober(lab.topology.client, addresses, None, 0.0)
    before.wait(30)
    macs = {mac for _, mac in before.answered.values()}
    if len(before.answered) != len(addresses) or len(macs) != 1:
        raise RuntimeError(f"before the kill {len(before.answered)} of {len(addresses)} "
                           f"addresses answered, from {len(macs)} MACs")
    old = macs.pop()
    t_kill = time.monotonic()
    after = Prober(lab.topology.client, addresses, old, t_kill)
    lab.kill_node(victim)
    after.wait(30)
    delays = sorted(t - t_kill for t, _ in after.answered.values())
    recorded = None
    while time.monotonic() - t_kill < 60:
        held = holders(api)
        if all(held.get(name) not in ("", victim) for name in mine):
            recorded = time.monotonic() - t_kill
            break
        time.sleep(0.5)
    by = {mac for _, mac in after.answered.values()}
    print(f"  {victim} killed holding {len(addresses)} addresses: {len(delays)} answered from "
          f"{len(by)} other MACs; first {delays[0]:.3f}s, median "
          f"{statistics.median(delays):.3f}s, last {delays[-1]:.3f}s after the kill; "
          f"API records every move at {recorded if recorded is None else f'{recorded:.1f}s'}",
          flush=True)
    if len(delays) < len(addresses):
        print(f"  {len(addresses) - len(delays)} addresses never answered within 30 s")
    return delays, recorded


def give_back(lab: Lab, api: Api, claims: dict[str, tuple[str, str, list[str]]],
              victim: str) -> None:
    """The node back, its claims written again for it once the standbys let go."""
    lab.restore_node(victim)
    mine = {name: spec for name, spec in claims.items() if spec[1] == victim}
    delete_claims(api, list(mine))
    wanted = {spec[0].split("/")[0] for spec in mine.values()}
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and any(wanted & on_node(lab, n) for n in lab.node_names):
        time.sleep(0.5)
    write_claims(api, mine)
    settle(lab, api, claims, 900)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--claims", type=int, default=10000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with Lab(nodes=3, mode="claims", schedulers=0, apps=()) as lab:
        assert lab.cp is not None
        api = Api(lab.cp)
        claims = placement(lab.node_names, args.claims)
        t0 = time.monotonic()
        write_claims(api, claims)
        progress(f"{args.claims} claims written in {time.monotonic() - t0:.1f}s")
        settle(lab, api, claims, 1200)
        lasts: list[float] = []
        victim = lab.node_names[0]
        for run in range(args.runs):
            print(f"run {run + 1}:", flush=True)
            delays, _ = one_run(lab, api, claims, victim)
            if delays:
                lasts.append(delays[-1])
            if run + 1 < args.runs:
                give_back(lab, api, claims, victim)
        print(f"the last address of the dead node answers from another node: median "
              f"{statistics.median(lasts):.3f}s, p99 {p99(lasts):.3f}s over {len(lasts)} runs "
              f"(every address probed, rounds of {ROUND * 1000:.0f} ms)")


if __name__ == "__main__":
    main()
