"""What the conflict probe (src/externalip/net/probe.py) and the port guard
(src/externalip/net/portguard.py) cost.

Two network namespaces on one veth; the other side holds half of the probed
addresses (IPv4 and IPv6). Measured:
  probe N: one probe of N first placements (two ARP probes / DAD
           solicitations each, 0.2 s of listening): the delay a new address
           waits before it is added; a takeover never pays it;
  guard:   the port guard's sets replaced by 1,000 addresses with 2 ports
           each, then one address changed (what a reconcile pays).
Median over several runs, wall time. Everything carries a unique prefix and
is removed on exit.

    .venv/bin/python bench/probe_cost.py [runs]
"""

from __future__ import annotations

import ipaddress
import secrets
import sys
import time

from _common import median

from externalip.core.addresses import IPAddress
from externalip.net.portguard import PortGuard
from externalip.net.probe import probe_now
from externalip_lab.netns import NetnsSet, entered


def addresses(count: int) -> list[IPAddress]:
    half = count // 2 or 1
    v4 = [ipaddress.ip_address(int(ipaddress.IPv4Address("198.18.0.10")) + i) for i in range(half)]
    v6 = [ipaddress.ip_address(int(ipaddress.IPv6Address("2001:db8::10")) + i)
          for i in range(count - half)]
    return [*v4, *v6]


def main(runs: int) -> None:
    prefix = "eipb" + secrets.token_hex(3)
    with NetnsSet(prefix) as ns:
        node, other = ns.namespace("node"), ns.namespace("other")
        dev = f"{prefix}n"
        ns.veth(node, dev, other, f"{prefix}o")
        ns.addr(node, dev, "198.18.0.1/16")
        ns.addr(other, f"{prefix}o", "198.18.0.2/16")
        for ip in addresses(100)[::2]:  # every other one is taken
            ns.addr(other, f"{prefix}o", f"{ip}/{32 if ip.version == 4 else 128}",
                    *(("nodad",) if ip.version == 6 else ()))
        with entered(node):
            for count in (1, 10, 100):
                wall, found = [], 0
                for _ in range(runs):
                    started = time.perf_counter()
                    found = len(probe_now(dev, addresses(count)))
                    wall.append(time.perf_counter() - started)
                print(f"probe {count:>3} addresses ({found:>2} taken): wall median "
                      f"{median(wall) * 1000:7.1f} ms ({runs} runs)")
            guard = PortGuard()
            guard.install()
            many = {ipaddress.ip_address(int(ipaddress.IPv4Address("198.18.1.0")) + i):
                    [("TCP", 80), ("TCP", 443)] for i in range(1000)}
            full, one = [], []
            for _ in range(runs):
                guard.hold({})
                started = time.perf_counter()
                guard.hold(many)
                full.append(time.perf_counter() - started)
                changed = dict(many)
                changed.pop(next(iter(changed)))
                started = time.perf_counter()
                guard.hold(changed)
                one.append(time.perf_counter() - started)
            guard.remove()
            guard.close()
            print(f"guard 1,000 addresses x 2 ports:  wall median {median(full) * 1000:7.1f} ms")
            print(f"guard one address changed:        wall median {median(one) * 1000:7.1f} ms")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
