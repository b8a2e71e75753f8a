"""Agent CPU under an ARP flood on a node with many links (issue 12, item 4).

Run as root:  .venv/bin/python bench/agent_arp_flood.py [--links 1000] [--rate 5000]
              [--seconds 30] [--claims 10]

A real control plane, one node namespace with the agent (under its shipped
service account, through an API proxy, like the tests) holding --claims
addresses, --links extra links in that namespace (veth pairs, both ends
inside: what pod veths look like to the agent), and a client namespace that
sends --rate ARP requests per second about other addresses of the segment.
Prints the agent's CPU over --seconds and the longest gap between two
renewals of its Lease (--hb 2s), seen by polling the API. Compare with other
code: PYTHONPATH=<checkout>/src .venv/bin/python bench/agent_arp_flood.py
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import itertools
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

from externalip.kube.client import connect
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.coordination_v1 import Lease

from externalip.core.model import NODE_LABEL
from externalip.kube.resources import IpClaimResource
from externalip.net.announce import arp_frame
from externalip_lab.apiproxy import ApiProxy
from externalip_lab.controlplane import ControlPlane
from externalip_lab.netns import NetnsSet, entered, ip

try:
    from externalip.core.model import node_label
except ImportError:  # code from before long node names were hashed (to compare)
    def node_label(node: str) -> str:
        return node

REPO = Path(__file__).resolve().parents[1]
NAMESPACE = "externalip"


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


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


async def bench(args: argparse.Namespace) -> None:
    prefix = "eipf" + os.urandom(2).hex()
    node_name = f"{prefix}-node"
    with tempfile.TemporaryDirectory() as tmp, ControlPlane(Path(tmp) / "cp") as cp, \
            NetnsSet(prefix) as ns:
        cp.install_crds(REPO / "deploy" / "crds")
        cp.ensure_namespace(NAMESPACE)
        cp.apply(REPO / "deploy" / "rbac" / "agent.yaml")
        node, client = ns.namespace("node"), ns.namespace("client")
        dev, cdev = f"{prefix}n", f"{prefix}c"
        ns.veth(node, dev, client, cdev)
        ns.addr(node, dev, "192.0.2.10/24")
        ns.addr(client, cdev, "192.0.2.20/24")
        add_links(node, prefix, args.links)
        links = len(ip("-o", "link", "show", netns=node).stdout.splitlines())
        proxy = ApiProxy(node, urlparse(cp.server).port or 443).start()
        kubeconfig = cp.service_account_kubeconfig(
            NAMESPACE, "externalip-agent", server=f"https://127.0.0.1:{proxy.listen_port}")
        log = (Path(tmp) / "agent.log").open("wb")
        agent = ns.popen(node, [sys.executable, "-m", "externalip", "agent",
                                f"--kubeconfig={kubeconfig}", f"--iface={dev}",
                                f"--hostname={node_name}", f"--namespace={NAMESPACE}",
                                "--hb=2s", "--metrics-addr=", "--log-level=warning"],
                         stdout=log, stderr=log)
        kube = await connect(str(cp.kubeconfig))
        stop, sent = threading.Event(), [0]
        try:
            for i in range(args.claims):
                await kube.create(IpClaimResource(
                    apiVersion="ipcontroller.ext/v1", kind="IpClaim",
                    metadata=ObjectMeta(name=f"{prefix}-c{i}",
                                        labels={NODE_LABEL: node_label(node_name)}),
                    spec={"cidr": f"192.0.2.{30 + i}/32", "nodeName": node_name}))
            await asyncio.sleep(5)  # synced, addresses held
            sender = threading.Thread(target=flood, args=(client, cdev, args.rate, stop, sent),
                                      daemon=True)
            sender.start()
            await asyncio.sleep(2)
            before, start, sent_before = cpu_seconds(agent.pid), time.monotonic(), sent[0]
            renewals: list[float] = []
            last = None
            while time.monotonic() - start < args.seconds:
                lease = await kube.get(Lease, node_name, namespace=NAMESPACE)
                renew = lease.spec.renewTime if lease.spec else None
                if renew != last:
                    renewals.append(time.monotonic())
                    last = renew
                await asyncio.sleep(0.1)
            elapsed = time.monotonic() - start
            user, system = (b - a for a, b in zip(before, cpu_seconds(agent.pid), strict=True))
            rate = (sent[0] - sent_before) / elapsed
            gaps = [b - a for a, b in itertools.pairwise(renewals)]
            print(f"agent with {args.claims} addresses, {links} links in its namespace, "
                  f"{rate:.0f} ARP frames/s about other addresses for {elapsed:.0f}s:")
            print(f"  agent CPU {100 * (user + system) / elapsed:.1f}% of a core (user "
                  f"{100 * user / elapsed:.1f}%, system {100 * system / elapsed:.1f}%); "
                  "Lease renewals "
                  f"(--hb 2s) {len(renewals)}, longest gap {max(gaps, default=0):.2f}s")
        finally:
            stop.set()
            await kube.close()
            proxy.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--links", type=int, default=1000)
    parser.add_argument("--rate", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--claims", type=int, default=10)
    asyncio.run(bench(parser.parse_args()))


if __name__ == "__main__":
    main()
