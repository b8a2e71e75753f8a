"""The physical limit: no controller at all. A VIP is added by hand with
`ip addr add` on a lab node plus one gratuitous ARP (request + reply, the
frames our announcer sends), and the client in its own namespace, already
polling http://VIP/ every 10 ms (200 ms timeout), gets its first 200 from a
pod, through kube-proxy (nftables) as with the controllers: the VIPs are the
externalIPs of one Service (externalTrafficPolicy Local, so each node
forwards to its own pod) that kube-proxy has programmed before the clock runs.

  reach:    t0 = just before `ip addr add` on node1; until the client's first 200.
  failover: the VIP served by node1; t0 = just before node1's link goes down;
            then `ip addr add` on node2 + one GARP; until the client's first
            200 from node2.

No controller runs: a lab (control plane, 2 nodes with kube-proxy and a pod
each) without programs. Everything carries a unique prefix and is removed
on exit.

    .venv/bin/python bench/physical_limit.py [runs] [--json FILE]

With --json, every value and each failover's timeline go to FILE for the
plots (bench/plots.py).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time

import yaml
from _common import ClientProbes, Probe, enter_netns, summary, timeline

from externalip.net.announce import ARP_REPLY, ARP_REQUEST, ETH_P_ARP, arp_frame
from externalip_lab.lab import Lab
from externalip_lab.topology import ip

NS = "bench"


def packet_socket(netns: str) -> tuple[socket.socket, bytes]:
    """An AF_PACKET socket on eth0 of a namespace (created by a thread that
    entered it; the socket stays there), and eth0's MAC."""
    out: list[tuple[socket.socket, bytes]] = []

    def create() -> None:
        enter_netns(netns)
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
        s.bind(("eth0", 0))
        out.append((s, s.getsockname()[4]))

    t = threading.Thread(target=create)
    t.start()
    t.join()
    return out[0]


def garp(sock: tuple[socket.socket, bytes], address: str) -> None:
    s, mac = sock
    vip = ipaddress.IPv4Address(address)
    s.send(arp_frame(mac, vip, ARP_REQUEST))
    s.send(arp_frame(mac, vip, ARP_REPLY))


VIPS = [f"192.0.2.{200 + i}" for i in range(51)]


def service() -> str:
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "limit", "namespace": NS},
        "spec": {"selector": {"app": "web"}, "externalIPs": VIPS,
                 "externalTrafficPolicy": "Local",
                 "ports": [{"name": "http", "port": 80, "targetPort": 80}]}})


def wait_programmed(lab: Lab) -> None:
    """Until kube-proxy on every node has the rules for every VIP."""
    programmed = f"{VIPS[-1]} . tcp . 80"
    for node in lab.node_names:
        while programmed not in ip("netns", "exec", lab.topology.node_ns(node), "nft", "list",
                                   "ruleset").stdout.replace("\t", " "):
            time.sleep(0.2)


def main(runs: int, json_path: str = "") -> None:
    lab = Lab(nodes=2, mode="none", prefix="eipb" + secrets.token_hex(2),
              apps=((NS, "web"),))
    topo = lab.topology
    probes: ClientProbes | None = None
    try:
        lab.start()
        assert lab.cp is not None
        lab.cp.apply(service())
        wait_programmed(lab)
        socks = {n: packet_socket(topo.node_ns(n)) for n in topo.node_names()}
        probes = ClientProbes(topo.client, 1)
        reach = []
        for i in range(runs):
            vip = f"192.0.2.{200 + i % 50}"
            ip("-n", topo.client, "neigh", "flush", "all")
            t0 = time.monotonic()
            pending = probes.start(vip, 10)
            ip("-n", topo.node_ns("node1"), "addr", "add", f"{vip}/32", "dev", "eth0")
            garp(socks["node1"], vip)
            if (got := pending.wait(12)) is not None:
                reach.append(got[0] - t0)
            ip("-n", topo.node_ns("node1"), "addr", "del", f"{vip}/32", "dev", "eth0")
        print(f"physical limit, reach (ip addr add + 1 GARP -> client's first 200): "
              f"{summary(reach, 'ms')}")

        failover: list[float] = []
        timelines: list[dict[str, object]] = []
        vip = "192.0.2.250"
        probe = Probe(topo.client, vip)
        try:
            for _ in range(runs):
                ip("-n", topo.node_ns("node1"), "addr", "add", f"{vip}/32", "dev", "eth0")
                garp(socks["node1"], vip)
                if probe.first(lambda n: n == "node1", 0, 10) is None:
                    continue
                time.sleep(0.2)
                t0 = time.monotonic()
                topo.link_down("node1")
                ip("-n", topo.node_ns("node2"), "addr", "add", f"{vip}/32", "dev", "eth0")
                garp(socks["node2"], vip)
                hit = probe.first(lambda n: n == "node2", t0, 10)
                if hit is not None:
                    failover.append(hit[0] - t0)
                    time.sleep(0.3)
                    timelines.append(timeline(probe, t0, "node1", hit[0] - t0 + 0.3))
                ip("-n", topo.node_ns("node2"), "addr", "del", f"{vip}/32", "dev", "eth0")
                ip("-n", topo.node_ns("node1"), "addr", "del", f"{vip}/32", "dev", "eth0")
                topo.link_up("node1")
                time.sleep(0.1)
        finally:
            probe.close()
        print(f"physical limit, failover (link down node1 -> ip addr add on node2 + 1 GARP "
              f"-> client's first 200 from node2): {summary(failover, 'ms')}")
        print(f"settings: probe every 10 ms, 200 ms timeout, {runs} runs each")
        if json_path:
            with open(json_path, "w") as f:
                json.dump({"command": "bench/physical_limit.py " + " ".join(sys.argv[1:]),
                           "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"],
                                                    capture_output=True, text=True,
                                                    check=False).stdout.strip(),
                           "raw": {"reach1": reach, "fo-node": failover},
                           "timelines": {"node": timelines}}, f, indent=1)
    finally:
        if probes is not None:
            probes.close()
        lab.stop()


if __name__ == "__main__":
    # SIGTERM (make, timeout) unwinds like Ctrl-C, so the lab is removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=int, nargs="?", default=50)
    parser.add_argument("--json", default="", help="also write every value to this file")
    args = parser.parse_args()
    main(args.runs, args.json)
