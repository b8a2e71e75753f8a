"""Agent figures: claim assignment -> address configured / announced, RSS, idle CPU.

Run as root:  .venv/bin/python bench/agent_latency.py [--claims 100] [--held 1000]

What it does: a real control plane, one node namespace with the agent running
under its shipped service account (through an API proxy, like the tests), and
a client namespace on a veth. For each of --claims claims it creates the claim
assigned to another node, then assigns it to ours (what the scheduler does)
and measures, on one monotonic clock:
- configured: the RTM_NEWADDR for the VIP seen by a netlink listener in the
  node namespace;
- announced: the first gratuitous ARP for the VIP captured in the client
  namespace.
Then it reports the agent's RSS and CPU while idle with 0 and with --held
addresses held (CPU over --idle seconds, which spans refresh cycles).
Nothing here is a test; it only prints figures.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import select
import socket
import statistics
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

from lightkube import AsyncClient, KubeConfig
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.types import PatchType
from pyroute2.netlink.rtnl import RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR

from externalip.core.model import NODE_LABEL
from externalip.kube.resources import IpClaimResource, IpNodeResource
from externalip.net.announce import parse_arp
from externalip_lab.apiproxy import ApiProxy
from externalip_lab.controlplane import ControlPlane
from externalip_lab.netns import NetnsSet, entered, ip

REPO = Path(__file__).resolve().parents[1]
NAMESPACE = "externalip"


def summary(values: list[float]) -> str:
    if not values:
        return "no data"
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return (f"median {statistics.median(ordered) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
            f"min {ordered[0] * 1000:.1f} ms, max {ordered[-1] * 1000:.1f} ms, n={len(ordered)}")


class Seen:
    """First time (monotonic) each VIP was seen by a listener thread."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}
        self.cond = threading.Condition()
        self.stop = threading.Event()

    def mark(self, vip: str) -> None:
        with self.cond:
            self.times.setdefault(vip, time.monotonic())
            self.cond.notify_all()

    def wait(self, vip: str, timeout: float) -> float | None:
        with self.cond:
            self.cond.wait_for(lambda: vip in self.times, timeout)
            return self.times.get(vip)


def listen_netlink(netns: str, seen: Seen) -> None:
    """RTM_NEWADDR on a plain netlink socket (a select()-able one, decoded by hand)."""
    with entered(netns):
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    sock.bind((0, RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    try:
        while not seen.stop.is_set():
            ready, _, _ = select.select([sock], [], [], 0.2)
            if not ready:
                continue
            data = sock.recv(1 << 16)
            while len(data) >= 16:
                length, kind = struct.unpack_from("=IH", data)
                if kind == 20 and length >= 24:  # RTM_NEWADDR: ifaddrmsg, then attributes
                    family = data[16]
                    attrs = data[24:length]
                    while len(attrs) >= 4:
                        alen, atype = struct.unpack_from("=HH", attrs)
                        if atype in (1, 2):  # IFA_ADDRESS, IFA_LOCAL
                            raw = attrs[4:alen]
                            seen.mark(str(ipaddress.ip_address(raw)) if family in
                                      (socket.AF_INET, socket.AF_INET6) else "")
                        attrs = attrs[(alen + 3) & ~3:]
                data = data[(length + 3) & ~3:]
    finally:
        sock.close()


def listen_arp(netns: str, dev: str, seen: Seen) -> None:
    with entered(netns):
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
        sock.bind((dev, 0))
    try:
        while not seen.stop.is_set():
            ready, _, _ = select.select([sock], [], [], 0.2)
            if ready:
                try:
                    frame = parse_arp(sock.recv(2048))
                except OSError:  # link gone at the end of the run
                    return
                if frame and frame["sender_ip"] == frame["target_ip"]:
                    seen.mark(str(frame["sender_ip"]))
    finally:
        sock.close()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def idle_figures(pid: int, seconds: float) -> tuple[float, float]:
    before, start = cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(seconds)
    used = cpu_seconds(pid) - before
    return rss_mb(pid), 100 * used / (time.monotonic() - start)


async def create_claim(kube: AsyncClient, name: str, cidr: str, node: str) -> None:
    await kube.create(IpClaimResource(
        apiVersion="ipcontroller.ext/v1", kind="IpClaim",
        metadata=ObjectMeta(name=name, labels={NODE_LABEL: node}),
        spec={"cidr": cidr, "nodeName": node}))


async def assign(kube: AsyncClient, name: str, node: str) -> None:
    await kube.patch(IpClaimResource, name, {"metadata": {"labels": {NODE_LABEL: node}},
                                             "spec": {"nodeName": node}},
                     patch_type=PatchType.MERGE)


def held_count(netns: str, dev: str) -> int:
    out = ip("-o", "addr", "show", "dev", dev, netns=netns).stdout
    return sum(1 for line in out.splitlines() if "dynamic" in line)


async def bench(args: argparse.Namespace) -> None:
    prefix = "eipb" + os.urandom(3).hex()
    node_name, other = f"{prefix}-node", f"{prefix}-other"
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
        proxy = ApiProxy(node, urlparse(cp.server).port or 443).start()
        kubeconfig = cp.service_account_kubeconfig(
            NAMESPACE, "externalip-agent", server=f"https://127.0.0.1:{proxy.listen_port}")
        log = (Path(tmp) / "agent.log").open("wb")
        agent = ns.popen(node, [sys.executable, "-m", "externalip", "agent",
                                f"--kubeconfig={kubeconfig}", f"--iface={dev}",
                                f"--hostname={node_name}", f"--namespace={NAMESPACE}",
                                "--metrics-addr=", "--log-level=warning"],
                         stdout=log, stderr=log)
        kube = AsyncClient(config=KubeConfig.from_file(cp.kubeconfig),
                           field_manager="externalip")
        seen_nl, seen_arp = Seen(), Seen()
        threads = [threading.Thread(target=listen_netlink, args=(node, seen_nl), daemon=True),
                   threading.Thread(target=listen_arp, args=(client, cdev, seen_arp),
                                    daemon=True)]
        for t in threads:
            t.start()
        try:
            await asyncio.sleep(3)  # agent started and synced
            rss0, cpu0 = await idle_figures(agent.pid, args.idle)
            print(f"idle, 0 addresses: RSS {rss0:.1f} MiB, CPU {cpu0:.2f} % of one core "
                  f"over {args.idle:g}s")

            vips = [str(ipaddress.ip_address("198.51.100.1") + i) for i in range(args.claims)]
            for i, vip in enumerate(vips):
                await create_claim(kube, f"{prefix}-l{i}", f"{vip}/32", other)
            configured, announced = [], []
            for i, vip in enumerate(vips):
                t0 = time.monotonic()
                await assign(kube, f"{prefix}-l{i}", node_name)
                t_arp = await asyncio.to_thread(seen_arp.wait, vip, 10)
                t_nl = seen_nl.wait(vip, 0)
                if t_nl is not None:
                    configured.append(t_nl - t0)
                if t_arp is not None:
                    announced.append(t_arp - t0)
            print(f"claim assigned -> address configured (netlink): {summary(configured)}")
            print(f"claim assigned -> gratuitous ARP seen by client: {summary(announced)}")

            extra = args.held - args.claims
            v4 = [str(ipaddress.ip_address("203.0.113.1") + i) for i in range(min(extra, 250))]
            v6 = [str(ipaddress.ip_address("2001:db8:1::1") + i) for i in range(extra - len(v4))]
            sem = asyncio.Semaphore(16)

            async def one(i: int, cidr: str) -> None:
                async with sem:
                    await create_claim(kube, f"{prefix}-h{i}", cidr, node_name)
            await asyncio.gather(*(one(i, f"{a}/32") for i, a in enumerate(v4)),
                                 *(one(len(v4) + i, f"{a}/128") for i, a in enumerate(v6)))
            start = time.monotonic()
            # polling the kernel's view, not waiting on anything of ours
            while held_count(node, dev) < args.held and time.monotonic() - start < 120:  # noqa: ASYNC110
                await asyncio.sleep(0.5)
            print(f"{held_count(node, dev)} addresses held "
                  f"{time.monotonic() - start:.1f}s after the last claim was created")
            # Idle means after the claim statuses and the IpNode are written too.
            while time.monotonic() - start < 300:
                inventory = await kube.get(IpNodeResource, node_name)
                listed = (inventory.get("status") or {}).get("addresses") or []
                if len(listed) >= args.held:
                    break
                await asyncio.sleep(1)
            print(f"claim statuses and IpNode written {time.monotonic() - start:.1f}s after "
                  "the last claim was created")
            await asyncio.sleep(5)  # let the last announcement bursts finish
            rss1, cpu1 = await idle_figures(agent.pid, args.idle)
            print(f"idle, {args.held} addresses: RSS {rss1:.1f} MiB, CPU {cpu1:.2f} % of one "
                  f"core over {args.idle:g}s (spans lifetime renewals)")
        finally:
            seen_nl.stop.set()
            seen_arp.stop.set()
            agent.terminate()
            agent.wait(20)
            await kube.close()
            proxy.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--claims", type=int, default=100)
    parser.add_argument("--held", type=int, default=1000)
    parser.add_argument("--idle", type=float, default=30.0,
                        help="seconds over which idle CPU is measured")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/agent_latency.py needs root (network namespaces)")
    asyncio.run(bench(args))


if __name__ == "__main__":
    main()
