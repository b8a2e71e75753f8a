"""Failover through kube-proxy, for connections: a new connection is served
through the new holder at once, and an established one does not follow the
IP. Its socket lived in a pod behind the dead node; the new holder has no
conntrack entry for it, DNATs its next segment to its own pod as if new,
and that pod answers with a reset: the client learns at once instead of
waiting out a timeout. As on a real node, and the same for any L2 VIP
mover (MetalLB, kube-vip)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from externalip_lab.lab import Lab
from externalip_lab.pods import Answer
from tests.e2e.conftest import NS, service, wait_ingress

pytestmark = [pytest.mark.e2e, pytest.mark.netns]


def test_an_established_connection_is_reset_a_new_one_served_by_the_new_holder(
        healthy: Lab) -> None:
    lab = healthy
    assert lab.cp is not None
    lab.cp.apply(service("conn", local=True))  # each node forwards to its own pod
    (ip,) = wait_ingress(lab, "conn")
    lab.wait_answer(ip)
    client = subprocess.Popen(["ip", "netns", "exec", lab.topology.client, sys.executable,
                               "-m", "externalip_lab.keepalive", ip, "20"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert client.stdin is not None and client.stdout is not None
        first = Answer.parse(json.loads(client.stdout.readline())["answer"])
        assert first is not None
        lab.kill_node(first.node)
        moved = lab.wait_answer(ip, within=60, not_from=first.node)
        assert moved.node != first.node and moved.pod != first.pod
        client.stdin.write("\n")
        client.stdin.flush()
        after = json.loads(client.stdout.readline())
        print(f"established connection after the move: {after}")
        assert after == {"error": "ConnectionResetError"}
    finally:
        client.kill()
        client.wait()
        lab.cp.kubectl("delete", "service", "conn", "-n", NS, "--wait=false")
