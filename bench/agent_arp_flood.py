"""Agent CPU under an ARP flood on a node with many links (issue 12, item 4; issue 11, criterion 5).

Run as root:  .venv/bin/python bench/agent_arp_flood.py [--links 1000] [--rate 5000]
              [--seconds 30] [--claims 10]

A real control plane and two node namespaces on one bridge with a client
(bench/_common.py AgentRig): the flooded node's agent holds --claims
addresses, each with the second node as its standby, and both agents run
data-plane failover as the chart deploys it. --links extra links live in the
flooded node's namespace (veth pairs, both ends inside: what pod veths look
like to the agent), and the client sends --rate ARP requests per second about
other addresses of the segment. Prints the flooded agent's CPU over
--seconds, the longest gap between two renewals of its Lease (--hb 2s, seen
by polling the API), and the claim moves: claims whose holder is no longer
the flooded node, and takeovers the standby logged (a starved agent judged
down by its peer would move its claims; it must print 0). Compare with other
code: PYTHONPATH=<checkout>/src .venv/bin/python bench/agent_arp_flood.py
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import itertools
import random
import socket
import subprocess
import threading
import time

from _common import AgentRig, claim_object, cpu_split
from lightkube import AsyncClient, KubeConfig
from lightkube.resources.coordination_v1 import Lease

from externalip.kube.resources import IpClaimResource
from externalip.net.announce import arp_frame
from externalip_lab.netns import entered, ip

NAMESPACE = "externalip"


def add_links(netns: str, prefix: str, count: int) -> None:
    pairs = count // 2
    lines = [f"link add {prefix}a{i} type veth peer name {prefix}b{i}" for i in range(pairs)]
    lines += [f"link set {prefix}{end}{i} up" for i in range(pairs) for end in "ab"]
    subprocess.run(["ip", "-n", netns, "-batch", "-"], input="\n".join(lines) + "\n",
                   text=True, check=True, capture_output=True)


def flood(client: str, dev: str, rate: int, stop: threading.Event, sent: list[int]) -> None:
    with entered(client):
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    sock.bind((dev, 0))
    mac = bytes.fromhex("020000000099")
    frames = []
    for _ in range(256):
        sender = ipaddress.IPv4Address(f"192.0.2.{random.randint(100, 250)}")
        target = ipaddress.IPv4Address(f"192.0.2.{random.randint(100, 250)}").packed
        frame = arp_frame(mac, sender, 1)
        frames.append(frame[:38] + target + frame[42:])
    batch = max(1, rate // 100)  # send in 10 ms slices
    next_slice = time.monotonic()
    while not stop.is_set():
        for i in range(batch):
            sock.send(frames[(sent[0] + i) % len(frames)])
        sent[0] += batch
        next_slice += batch / rate
        delay = next_slice - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    sock.close()


async def holders(kube: AsyncClient) -> list[str | None]:
    """The status holder of every claim."""
    return [(c.get("status") or {}).get("holder") for c in
            [c async for c in kube.list(IpClaimResource)]]


async def lease_renewals(kube: AsyncClient, node: str, seconds: float) -> list[float]:
    """Times the node's Lease renewTime changed, polled every 100 ms for `seconds`."""
    renewals: list[float] = []
    last = None
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        lease = await kube.get(Lease, node, namespace=NAMESPACE)
        renew = lease.spec.renewTime if lease.spec else None
        if renew != last:
            renewals.append(time.monotonic())
            last = renew
        await asyncio.sleep(0.1)
    return renewals


async def bench(args: argparse.Namespace) -> None:
    def links(rig: AgentRig) -> None:
        add_links(rig.nodes[0], rig.prefix, args.links)

    with AgentRig("eipf", nodes=2, agent_args=("--hb=2s",), before_agents=links) as rig:
        node_links = len(ip("-o", "link", "show", netns=rig.nodes[0]).stdout.splitlines())
        kube = AsyncClient(config=KubeConfig.from_file(rig.admin), field_manager="externalip")
        stop, sent = threading.Event(), [0]
        try:
            for i in range(args.claims):
                await kube.create(claim_object(f"{rig.prefix}-c{i}", f"192.0.2.{30 + i}/32",
                                               rig.names[0], standbys=(rig.names[1],)))
            deadline = time.monotonic() + 60
            while (held := (await holders(kube)).count(rig.names[0])) < args.claims \
                    and time.monotonic() < deadline:  # noqa: ASYNC110 - the API's view
                await asyncio.sleep(0.5)
            print(f"{held} of {args.claims} claims held by the flooded node before the flood")
            sender = threading.Thread(target=flood, daemon=True,
                                      args=(rig.client, rig.cdev, args.rate, stop, sent))
            sender.start()
            await asyncio.sleep(2)
            pid = rig.agent.pid
            before, start, sent_before = cpu_split(pid), time.monotonic(), sent[0]
            renewals = await lease_renewals(kube, rig.names[0], args.seconds)
            elapsed = time.monotonic() - start
            user, system = (b - a for a, b in zip(before, cpu_split(pid), strict=True))
            rate = (sent[0] - sent_before) / elapsed
            gaps = [b - a for a, b in itertools.pairwise(renewals)]
            stop.set()
            await asyncio.sleep(2)  # a takeover decided at the very end still shows
            moved = sum(1 for h in await holders(kube) if h != rig.names[0])
            takeovers = rig.log(1).count("taking over")
            print(f"agent with {args.claims} addresses, {node_links} links in its namespace, "
                  f"{rate:.0f} ARP frames/s about other addresses for {elapsed:.0f}s:")
            print(f"  agent CPU {100 * (user + system) / elapsed:.1f}% of a core (user "
                  f"{100 * user / elapsed:.1f}%, system {100 * system / elapsed:.1f}%); "
                  "Lease renewals "
                  f"(--hb 2s) {len(renewals)}, longest gap {max(gaps, default=0):.2f}s")
            print(f"  claim moves: {moved} (claims now held by another node); takeovers "
                  f"logged by the standby: {takeovers}")
        finally:
            stop.set()
            await kube.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--links", type=int, default=1000)
    parser.add_argument("--rate", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--claims", type=int, default=10)
    asyncio.run(bench(parser.parse_args()))


if __name__ == "__main__":
    main()
