"""What the nftables fence (src/externalip/net/nftfence.py) costs.

In a network namespace of its own with one veth, the fence is installed and:
  hold:    the held set replaced by 5,000 IPv4 addresses, then by 5,000 IPv6
           addresses (one transaction each; what the agent pays when its held
           addresses change wholesale);
  refresh: one refresh of the liveness element (what the heartbeat thread
           pays every interval, 10 times a second by default).
Median and p99 over several runs, wall time and the calling thread's CPU
time (user + system: the kernel's work on the netlink batch is done in the
caller's system call, so it is included). Everything carries a unique
prefix and is removed on exit.

    .venv/bin/python bench/fence_cost.py [hold-runs] [refresh-runs]
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import sys
import time
from collections.abc import Callable

from _common import median, p99

from externalip.core.addresses import IPAddress
from externalip.net.nftfence import Fence
from externalip_lab.netns import NetnsSet, entered

ADDRESSES = 5000


def measure(action: Callable[[], object], runs: int) -> tuple[list[float], list[float]]:
    wall, cpu = [], []
    for _ in range(runs):
        w0, c0 = time.perf_counter(), time.thread_time()
        action()
        cpu.append(time.thread_time() - c0)
        wall.append(time.perf_counter() - w0)
    return wall, cpu


def line(what: str, wall: list[float], cpu: list[float]) -> str:
    ms = 1000
    return (f"{what:<34} wall median {median(wall) * ms:8.3f} ms  p99 {p99(wall) * ms:8.3f} ms"
            f"   cpu median {median(cpu) * ms:8.3f} ms  p99 {p99(cpu) * ms:8.3f} ms"
            f"   ({len(wall)} runs)")


def main(hold_runs: int, refresh_runs: int) -> None:
    prefix = "eipb" + secrets.token_hex(3)
    v4: list[IPAddress] = [ipaddress.ip_address(int(ipaddress.IPv4Address("198.18.0.0")) + i)
                           for i in range(ADDRESSES)]
    v6: list[IPAddress] = [ipaddress.ip_address(int(ipaddress.IPv6Address("2001:db8::")) + i)
                           for i in range(ADDRESSES)]
    with NetnsSet(prefix) as ns:
        node, peer = ns.namespace("node"), ns.namespace("peer")
        ns.veth(node, f"{prefix}n", peer, f"{prefix}p")
        with entered(node):
            fence = Fence(f"{prefix}n")
        try:
            fence.install()
            print(f"fence cost on {os.uname().release}, load average "
                  f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
            print(line("install", *measure(fence.install, hold_runs)))
            # hold() writes differences: alternate with an empty set so each run
            # writes all 5,000 (what a fresh start or a wholesale change costs)
            for what, addrs in ((f"hold({ADDRESSES:,} IPv4)", v4),
                                (f"hold({ADDRESSES:,} IPv6)", v6),
                                (f"hold({ADDRESSES:,} IPv4 + {ADDRESSES:,} IPv6)", v4 + v6)):
                wall, cpu = [], []
                for _ in range(hold_runs):
                    fence.hold([])
                    w, c = measure(lambda addrs=addrs: fence.hold(addrs), 1)  # type: ignore[misc]
                    wall += w
                    cpu += c
                print(line(what, wall, cpu))
            assert len(fence.held()) == 2 * ADDRESSES
            one_more = [*v4, ipaddress.ip_address("198.19.255.255")]

            def flip() -> None:  # one address added or removed among 5,000
                fence.hold(one_more)
                fence.hold(v4)

            wall, cpu = measure(flip, hold_runs)
            print(line(f"hold(1 changed among {ADDRESSES:,})", [w / 2 for w in wall],
                       [c / 2 for c in cpu]))
            wall, cpu = measure(lambda: fence.refresh(0.25), refresh_runs)
            print(line("refresh(0.25 s)", wall, cpu))
            print(f"refresh every 100 ms: {median(cpu) * 10 * 100:.3f} % of one core "
                  f"(median CPU x 10 per second)")
        finally:
            fence.remove()
            fence.close()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 9,
         int(sys.argv[2]) if len(sys.argv) > 2 else 500)
