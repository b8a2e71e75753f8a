"""The port guard in network namespaces (issue 12, item 10): a host service
listening on all addresses answers on the node's own address, but on an
address held for a Service only the Service's ports and ping get through.

The segment (a node and a client namespace on a veth, V4 and V6 held by the
node) is test_net_fence's.
"""

from __future__ import annotations

import ipaddress
import subprocess
import sys

import pytest

from externalip.net.portguard import PortGuard, elements
from externalip_lab.netns import entered
from tests.integration.test_net_fence import V4, V6, Segment, seg  # noqa: F401

pytestmark = pytest.mark.netns

LISTENER = """
import socket, sys, threading
def serve(family, host, port):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind((host, port)); s.listen(8)
    while True:
        c, _ = s.accept(); c.sendall(b"hi"); c.close()
for port in (2222, 8080):
    for fam, host in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        threading.Thread(target=serve, args=(fam, host, port), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"""

CONNECT = """
import socket, sys
try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1.5) as s:
        print(s.recv(2).decode())
except OSError as e:
    print("no", e)
"""


def reaches(segment: Segment, addr: str, port: int) -> bool:
    done = segment.ns.exec(segment.client, [sys.executable, "-c", CONNECT, addr, str(port)])
    return done.stdout.strip() == "hi"


def pings(segment: Segment, addr: str) -> bool:
    done = segment.ns.exec(segment.client, ["ping", "-n", "-c", "1", "-w", "2", addr])
    return done.returncode == 0


def test_only_the_service_ports_and_ping_reach_a_held_address(seg: Segment) -> None:  # noqa: F811
    listener = seg.ns.popen(seg.node, [sys.executable, "-c", LISTENER], stdout=subprocess.PIPE)
    assert listener.stdout is not None and listener.stdout.readline().strip() == b"ready"
    with entered(seg.node):
        guard = PortGuard()
    try:
        guard.install()
        assert reaches(seg, V4, 2222) and reaches(seg, V6, 2222)  # nothing guarded yet
        v4, v6 = ipaddress.ip_address(V4), ipaddress.ip_address(V6)
        guard.hold({v4: [("TCP", 8080)], v6: [("TCP", 8080), ("UDP", 53)]})
        for addr in (V4, V6):
            assert reaches(seg, addr, 8080), f"the Service's port on {addr}"
            assert not reaches(seg, addr, 2222), f"a host service on {addr}"
            assert pings(seg, addr)
        assert guard.dropped() >= 2  # the guard dropped them, not something else
        assert reaches(seg, "192.0.2.10", 2222)  # the node's own address: untouched
        assert reaches(seg, "2001:db8::10", 2222)
        guard.hold({v6: [("TCP", 2222)]})  # V4 released, V6's ports changed
        assert reaches(seg, V4, 2222) and reaches(seg, V6, 2222)
        assert not reaches(seg, V6, 8080)
        guard.install()  # a restarted agent: idempotent, the sets stay
        assert not reaches(seg, V6, 8080)
        guard.hold({})
        assert reaches(seg, V6, 8080)
    finally:
        guard.remove()
        guard.close()
    out = seg.ns.exec(seg.node, ["nft", "list", "tables"]).stdout
    assert "externalip_guard" not in out


def test_elements_skip_what_nft_cannot_name() -> None:
    ip = ipaddress.ip_address("192.0.2.1")
    assert elements({ip: [("TCP", 80), ("udp", 53), ("ICMP", 1), ("TCP", 0)]}) == [
        "held4 192.0.2.1", "open4 192.0.2.1 . tcp . 80", "open4 192.0.2.1 . udp . 53"]
