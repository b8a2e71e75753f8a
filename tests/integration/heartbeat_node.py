"""One node's heartbeats with its fence, as a process a test can freeze.

    python heartbeat_node.py NODE LINK PORT KEY-HEX ADDRESS...

Installs the fence on LINK for ADDRESS... and beats with a stand-in for the
failover rules: hold while at least one peer is heard and our own loop is
not starved. Prints "ready" once running; runs until killed. The test runs
it inside a node namespace (`ip netns exec`).
"""

from __future__ import annotations

import ipaddress
import sys
import threading

from externalip import log
from externalip.core.heartbeat import KeyRing, PeerView
from externalip.net.heartbeat import Heartbeats
from externalip.net.nftfence import Fence

DETECT, FENCE_TIMEOUT = 1.0, 0.5  # wider than the defaults: a shared test machine


def may_hold(view: PeerView) -> bool:
    return bool(view.hears) and not view.starved


def main(node: str, link: str, port: int, key: bytes, addresses: list[str]) -> None:
    log.setup("json", "warning")
    fence = Fence(link)
    fence.install()
    fence.hold(map(ipaddress.ip_address, addresses))
    beats = Heartbeats(node, link, port, KeyRing(1, {1: key}), detect=DETECT,
                       starve_after=0.4, fence=fence, fence_timeout=FENCE_TIMEOUT,
                       may_hold=may_hold)
    beats.start()
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), bytes.fromhex(sys.argv[4]), sys.argv[5:])
