"""Agent figures: claim assignment -> address configured / announced, RSS, idle CPU.

Run as root:  .venv/bin/python bench/agent_latency.py [--claims 100] [--held 5000]

What it does: a real control plane, one node namespace with the agent running
under its shipped service account (through an API proxy, like the tests, with
data-plane failover on as the chart deploys it), and a client namespace on
the same bridge (bench/_common.py AgentRig). For each of --claims claims it creates the claim
assigned to another node, then assigns it to ours (what the scheduler does)
and measures, on one monotonic clock:
- configured: the RTM_NEWADDR for the VIP seen by a netlink listener in the
  node namespace;
- announced: the first gratuitous ARP for the VIP captured in the client
  namespace.
Then --held claims in all (issue 16: 5,000) are created for our node by 16
client threads, and it reports when the last address was configured and when
the last claim status was written, both after the last create returned, and
how many full address dumps the agent made meanwhile (from its netlink
notifications, it should make none). Then the agent's RSS and CPU while idle
with 0 and with --held addresses held (CPU over --idle seconds, which spans
lifetime renewals).
Nothing here is a test; it only prints figures.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import select
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

from _common import AgentRig, Api, claim_object, rss_cpu, summary
from lightkube import AsyncClient, KubeConfig
from lightkube.types import PatchType
from pyroute2.netlink.rtnl import RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR

from externalip.kube.resources import IpClaimResource
from externalip.net.announce import parse_arp
from externalip_lab.netns import entered

REPO = Path(__file__).resolve().parents[1]
CLAIMS = "/apis/ipcontroller.ext/v1/ipclaims"


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


async def idle_figures(pid: int, seconds: float) -> tuple[float, float]:
    _rss, before = rss_cpu(pid)
    start = time.monotonic()
    await asyncio.sleep(seconds)
    rss, after = rss_cpu(pid)
    return rss, 100 * (after - before) / (time.monotonic() - start)


async def assign(kube: AsyncClient, name: str, node: str) -> None:
    obj = claim_object(name, "0.0.0.0/32", node)  # labels as the scheduler writes them
    await kube.patch(IpClaimResource, name, {"metadata": {"labels": obj.metadata.labels},
                                             "spec": {"nodeName": node}},
                     patch_type=PatchType.MERGE)


async def ready_count(api: Api, node: str) -> int:
    """Claims ready on `node` (plain HTTP and the C JSON parser: lightkube's
    models for 5,000 claims every 0.5 s starved the API proxy in this process)."""
    items = (await asyncio.to_thread(api.request, "GET", CLAIMS))["items"]
    return sum(1 for c in items
               if (c.get("status") or {}).get("ready") and c["status"].get("holder") == node)


async def latency(rig: AgentRig, kube: AsyncClient, args: argparse.Namespace,
                  seen_nl: Seen, seen_arp: Seen) -> None:
    """One claim at a time: assigned -> configured, assigned -> announced."""
    vips = [str(ipaddress.ip_address("198.51.100.1") + i) for i in range(args.claims)]
    for i, vip in enumerate(vips):
        await kube.create(claim_object(f"{rig.prefix}-l{i}", f"{vip}/32", "elsewhere"))
    configured, announced = [], []
    for i, vip in enumerate(vips):
        t0 = time.monotonic()
        await assign(kube, f"{rig.prefix}-l{i}", rig.names[0])
        t_arp = await asyncio.to_thread(seen_arp.wait, vip, 10)
        t_nl = seen_nl.wait(vip, 0)
        if t_nl is not None:
            configured.append(t_nl - t0)
        if t_arp is not None:
            announced.append(t_arp - t0)
    print(f"claim assigned -> address configured (netlink): {summary(configured, 'ms')}")
    print(f"claim assigned -> gratuitous ARP seen by client: {summary(announced, 'ms')}")


async def scale(rig: AgentRig, kube: AsyncClient, args: argparse.Namespace,
                seen_nl: Seen) -> None:
    """--held claims in all: when the last address and the last status came."""
    extra = args.held - args.claims
    cidrs = [f"{ipaddress.ip_address('198.18.0.1') + i}/32" for i in range(extra - args.v6)]
    cidrs += [f"{ipaddress.ip_address('2001:db8:1::1') + i}/128" for i in range(args.v6)]
    sem = asyncio.Semaphore(16)

    async def one(i: int, cidr: str) -> None:
        async with sem:
            await kube.create(claim_object(f"{rig.prefix}-h{i}", cidr, rig.names[0]))
    first = time.monotonic()
    await asyncio.gather(*(one(i, c) for i, c in enumerate(cidrs)))
    last = time.monotonic()
    print(f"{len(cidrs)} more claims created in {last - first:.1f}s "
          f"({len(cidrs) / (last - first):.0f}/s, 16 client threads)")
    vips = [c.split("/")[0] for c in cidrs]
    deadline = last + 120
    while time.monotonic() < deadline and not all(v in seen_nl.times for v in vips):  # noqa: ASYNC110
        await asyncio.sleep(0.2)
    times = [seen_nl.times[v] for v in vips if v in seen_nl.times]
    print(f"{len(times)} of {len(vips)} addresses configured; the last one "
          f"{max(times) - last:+.2f}s after the last create returned "
          f"(the first {min(times) - first:.2f}s after the first create)")
    while time.monotonic() < last + 300:
        if await ready_count(Api(rig.cp), rig.names[0]) >= args.held:
            break
        await asyncio.sleep(0.5)
    print(f"all {args.held} claim statuses ready {time.monotonic() - last:.1f}s after the last "
          "create returned (polled every 0.5 s)")


async def bench(args: argparse.Namespace) -> None:
    with AgentRig("eipb") as rig:
        kube = AsyncClient(config=KubeConfig.from_file(rig.admin), field_manager="externalip")
        seen_nl, seen_arp = Seen(), Seen()
        threads = [threading.Thread(target=listen_netlink, args=(rig.nodes[0], seen_nl),
                                    daemon=True),
                   threading.Thread(target=listen_arp, args=(rig.client, rig.cdev, seen_arp),
                                    daemon=True)]
        for t in threads:
            t.start()
        try:
            await asyncio.sleep(3)  # agent started and synced
            rss0, cpu0 = await idle_figures(rig.agent.pid, args.idle)
            print(f"idle, 0 addresses: RSS {rss0:.1f} MiB, CPU {cpu0:.2f} % of one core "
                  f"over {args.idle:g}s")
            await latency(rig, kube, args, seen_nl, seen_arp)
            await scale(rig, kube, args, seen_nl)
            await asyncio.sleep(5)  # let the last announcement bursts finish
            spy = None
            if args.profile:  # where the idle time goes (py-spy, if installed)
                spy = subprocess.Popen(  # noqa: ASYNC220 - started, not awaited
                    ["py-spy", "record", "-p", str(rig.agent.pid), "-d", str(int(args.idle)),
                     "-r", "100", "-f", "raw", "-o", args.profile, "--nonblocking"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            rss1, cpu1 = await idle_figures(rig.agent.pid, args.idle)
            if spy is not None:
                spy.wait(30)
            print(f"idle, {args.held} addresses: RSS {rss1:.1f} MiB, CPU {cpu1:.2f} % of one "
                  f"core over {args.idle:g}s (spans lifetime renewals)")
            dumps = rig.log().count("full address dump")
            print(f"netlink notifications lost (each costs one full address dump): {dumps}")
        finally:
            seen_nl.stop.set()
            seen_arp.stop.set()
            await kube.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--claims", type=int, default=100)
    parser.add_argument("--held", type=int, default=5000)
    parser.add_argument("--v6", type=int, default=0,
                        help="how many of the --held claims are IPv6 (the kernel's IPv6 "
                             "address changes cost O(addresses) each: see docs/benchmarks.md)")
    parser.add_argument("--profile", default="",
                        help="write py-spy's raw samples of the idle agent to this file")
    parser.add_argument("--idle", type=float, default=30.0,
                        help="seconds over which idle CPU is measured")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/agent_latency.py needs root (network namespaces)")
    asyncio.run(bench(args))


if __name__ == "__main__":
    main()
