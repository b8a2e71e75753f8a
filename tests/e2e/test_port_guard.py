"""The port guard on the wire (issue 12, item 10): a host service on the node
that holds a Service address, listening on all addresses, answers the client
on the node's own address but not on the Service's; the Service's port (a pod
through kube-proxy) and ping still answer on it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from externalip_lab.lab import Lab
from externalip_lab.topology import node_addresses
from tests.e2e.conftest import NS, service, wait_ingress
from tests.helpers import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.netns]

HOST_SERVICE = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 2222)); s.listen(8)
while True:
    c, _ = s.accept(); c.sendall(b"host"); c.close()
"""


def client_reaches(lab: Lab, addr: str, port: int) -> bool:
    code = ("import socket,sys\ntry:\n"
            f" s=socket.create_connection(({addr!r},{port}),timeout=1.5)\n"
            " print(s.recv(4).decode())\n"
            "except OSError as e:\n print('no',e)")
    done = subprocess.run(["ip", "netns", "exec", lab.topology.client, sys.executable, "-c", code],
                          capture_output=True, text=True, check=False)
    return done.stdout.strip() == "host"


def client_pings(lab: Lab, addr: str) -> bool:
    return subprocess.run(["ip", "netns", "exec", lab.topology.client, "ping", "-n", "-c", "1",
                           "-w", "2", addr], capture_output=True, check=False).returncode == 0


def test_a_host_service_does_not_answer_on_a_service_address(lab: Lab) -> None:
    assert lab.cp is not None
    lab.cp.apply(service("guarded"))
    (vip,) = wait_ingress(lab, "guarded")
    holder = lab.wait_settled(vip)  # the Service's port: a pod through kube-proxy
    node_ip = node_addresses(lab.node_names.index(holder) + 1)[0]
    lab.spawn_process("host-service", ["ip", "netns", "exec", lab.topology.node_ns(holder),
                                       sys.executable, "-c", HOST_SERVICE])
    try:
        wait_for(lambda: client_reaches(lab, node_ip, 2222), what="the host service on the node IP")
        assert not client_reaches(lab, vip, 2222)
        assert client_pings(lab, vip)
        assert lab.client_get(vip, timeout=2) == holder  # the Service still answers
    finally:
        lab.stop_process("host-service")
        lab.cp.kubectl("delete", "service", "guarded", "-n", NS)
