"""Drain, make-before-break: what a client polling the whole time sees when
the node holding its Service's address is drained.

A lab of 3 nodes runs the agents and schedulers (claims mode, heartbeats,
kube-proxy in nftables mode). One LoadBalancer Service. Each run: the client
polls http://VIP/ (a new connection every 20 ms, 1 s timeout; lab module
externalip_lab.poll) for 3 s, then `externalip drain <holder>` runs, and the
client keeps polling until the old node has let the address go (the agents
run with --handover-delay=2s to keep runs short; the delay does not change
what the client sees, it only lengthens the quiet overlap). Then the node is
undrained (nothing moves back) and the next run drains the new holder.

Per run:
  failed:   requests that got no answer (by kind: timeout = nobody
            answered, reset = in flight while the client switched MACs);
  gap:      the longest time between two answered requests from 0.5 s
            before the drain until 1 s after the client's first answer
            through the new node;
  baseline: the same, over an equally long window before the drain with
            nothing happening (the machine's own noise: shared CPU);
  switch:   drain command to the client's first answer through the new node
            (the command's own start, about 0.4 s of Python imports, included);
  two MACs: how long both nodes answered ARP for the address (the ARP
            watcher asks "who has" every 10 ms): from the new node's first
            answer to the old node's last, the time the old node needs to
            read the new holder's status and go quiet.

    .venv/bin/python bench/drain_gap.py [runs]
"""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from typing import Any

import yaml
from _common import ArpWatch, summary

from externalip_lab import poll
from externalip_lab.lab import Lab

NS = "bench"


def service() -> str:
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "drain", "namespace": NS},
        "spec": {"type": "LoadBalancer", "selector": {"app": "web"},
                 "ports": [{"name": "http", "port": 80, "targetPort": 80}]}})


def kubectl_json(lab: Lab, *args: str) -> Any:
    assert lab.cp is not None
    return yaml.safe_load(lab.cp.kubectl("get", *args, "-o", "json").stdout)


def holder(lab: Lab, ip: str) -> str:
    """The claim's node, once it alone holds the address and its status is ready."""
    name = f"{ip.replace('.', '-')}-32"
    while True:
        claim = kubectl_json(lab, "ipclaim", name)
        node = claim["spec"].get("nodeName", "")
        if (claim.get("status") or {}).get("ready") and lab.holders(ip) == [node]:
            return str(node)
        time.sleep(0.2)


def externalip(lab: Lab, *args: str) -> None:
    assert lab.cp is not None
    subprocess.run([sys.executable, "-m", "externalip", *args,
                    f"--kubeconfig={lab.cp.kubeconfig}"], check=True, timeout=60,
                   capture_output=True)


def longest(gaps: list[list[float]], start: float, end: float, interval: float) -> float:
    """The longest gap ending within [start, end] (one interval if none was long)."""
    return max([g for t, g in gaps if start <= t <= end] or [interval])


def one_run(lab: Lab, ip: str) -> dict[str, Any]:
    old = holder(lab, ip)
    client = poll.start(lab.topology.client, ip, seconds=12.0)
    arp = ArpWatch(lab.topology.client, ip)
    time.sleep(3.0)
    t_drain = time.monotonic()
    externalip(lab, "drain", old)
    while lab.holders(ip) != [h for h in lab.holders(ip) if h != old] or not lab.holders(ip):
        time.sleep(0.1)
    seen = poll.result(client, wait=60)
    arp.close()
    old_mac = arp.mac_at(t_drain)
    externalip(lab, "undrain", old)
    switch = next((t for t, n in seen["via"] if n != old and t >= t_drain), None)
    window = (switch or t_drain + 5.0) + 1.0 - (t_drain - 0.5)
    return {"old": old, "failed": seen["failed"],
            "failed_at": [round(t - (switch or t_drain), 3) for t, _ in seen["failures"]],
            "gap": longest(seen["gaps"], t_drain - 0.5, t_drain - 0.5 + window, 0.02),
            "baseline": longest(seen["gaps"], t_drain - 0.5 - window, t_drain - 0.5, 0.02),
            "switch": None if switch is None else switch - t_drain,
            "two_macs": arp.overlap(old_mac, t_drain) if old_mac else None}


def main(runs: int) -> None:
    lab = Lab(nodes=3, mode="claims", prefix="eipb" + secrets.token_hex(2),
              apps=((NS, "web"),), agent_args=("--handover-delay=2s",))
    try:
        lab.start()
        assert lab.cp is not None
        lab.cp.ensure_namespace(NS)
        lab.cp.apply(service())
        while not (ingress := kubectl_json(lab, "service", "drain", "-n", NS)
                   .get("status", {}).get("loadBalancer", {}).get("ingress")):
            time.sleep(0.2)
        ip = ingress[0]["ip"]
        lab.wait_answer(ip)
        results = []
        for i in range(runs):
            r = one_run(lab, ip)
            results.append(r)
            switch = "-" if r["switch"] is None else f"{r['switch']:.2f}s"
            at = f" ({', '.join(f'{t:+.3f}s' for t in r['failed_at'])} from the switch)" \
                if r["failed_at"] else ""
            print(f"run {i + 1}: drained {r['old']}: failed {r['failed'] or 'none'}{at}, gap "
                  f"{r['gap'] * 1000:.0f} ms (baseline {r['baseline'] * 1000:.0f} ms), "
                  f"switch {switch}, two MACs {(r['two_macs'] or 0) * 1000:.0f} ms", flush=True)
        lost = sum(sum(r["failed"].values()) for r in results)
        print(f"drain under load, {runs} runs: requests lost {lost}")
        print(f"  longest gap around the drain: {summary([r['gap'] for r in results], 'ms')}")
        print(f"  longest gap, same window with no drain: "
              f"{summary([r['baseline'] for r in results], 'ms')}")
        print(f"  both nodes answering ARP: "
              f"{summary([r['two_macs'] for r in results if r['two_macs'] is not None], 'ms')}")
        print(f"  drain command -> first answer through the new node: "
              f"{summary([r['switch'] for r in results if r['switch'] is not None], 's')}")
    finally:
        lab.stop()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
