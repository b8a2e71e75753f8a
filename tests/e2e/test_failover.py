"""Failover as the client sees it: node death, agent death, agent removal,
partition from the API, and a control-plane restart under a running lab."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from externalip_lab.lab import Lab
from externalip_lab.topology import node_addresses
from tests.e2e.conftest import (
    NS,
    agent_get,
    claims,
    get,
    service,
    wait_ingress,
    wait_reachable,
)
from tests.helpers import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.netns]


@contextmanager
def held_service(lab: Lab, name: str) -> Iterator[tuple[str, str]]:
    assert lab.cp is not None
    lab.cp.apply(service(name))
    (ip,) = wait_ingress(lab, name)
    # An address of an earlier test may still linger on a node that was cut off
    # from the API (it learns of the deletion when it reconnects): start once
    # exactly the claim's node holds it.
    claim = f"{ip.replace('.', '-')}-32"

    def settled() -> bool:
        found = claims(lab).get(claim)
        return bool(found and (found.get("status") or {}).get("ready")
                    and lab.holders(ip) == [found["spec"]["nodeName"]])
    wait_for(settled, within=60, what=f"{ip} held by its claim's node only")
    node = claims(lab)[claim]["spec"]["nodeName"]
    assert wait_reachable(lab, ip) == node
    try:
        yield ip, node
    finally:
        lab.cp.kubectl("delete", "service", name, "-n", NS, "--wait=false")


def mac_of(lab: Lab, node: str) -> str:
    out = json.loads(subprocess.run(["ip", "-n", lab.topology.node_ns(node), "-j", "link",
                                     "show", "eth0"], capture_output=True, text=True,
                                    check=True).stdout)
    return str(out[0]["address"])


def takeovers(lab: Lab, node: str) -> tuple[float, float]:
    """(count, sum) of the node agent's externalip_takeover_seconds, read where it listens."""
    page = agent_get(lab, node, "/metrics")[1]
    found = {line.split()[0]: float(line.split()[1]) for line in page.splitlines()
             if line.startswith("externalip_takeover_seconds_")}
    return (found.get("externalip_takeover_seconds_count", 0.0),
            found.get("externalip_takeover_seconds_sum", 0.0))


FAULTS = ["node-death", "link-down", "agent-sigkill", "agent-sigterm", "agent-frozen"]


@pytest.mark.parametrize("fault", FAULTS)
def test_ip_moves_to_another_node_and_one_mac_answers(healthy: Lab, fault: str) -> None:
    """Every fault: the address moves to a standby (data-plane detection, no
    API write before it), and afterwards exactly one MAC answers ARP for it,
    also when the old holder's agent is frozen and its address still there."""
    lab = healthy
    with held_service(lab, f"fo-{fault}") as (ip, node):
        before = {n: takeovers(lab, n) for n in lab.node_names if n != node}
        started = time.monotonic()
        if fault == "node-death":
            lab.kill_node(node)
        elif fault == "link-down":
            lab.topology.link_down(node)
        elif fault == "agent-sigkill":
            lab.kill_agent(node)
        elif fault == "agent-sigterm":
            lab.stop_agent(node)  # graceful removal: the agent does not come back
        else:
            lab.freeze_agent(node)
        other = wait_reachable(lab, ip, within=60, not_from=node)
        print(f"{fault}: client reached {ip} on {other} {time.monotonic() - started:.2f}s "
              f"after {node} failed")
        assert other != node
        assert arp_responders(lab, ip, 2.0) == {mac_of(lab, other)}
        # the new holder's takeover histogram has it, from detection to announcement
        count, total = takeovers(lab, other)
        assert count >= before[other][0] + 1, (before, count)
        assert 0 <= total - before[other][1] < time.monotonic() - started
        wait_for(lambda: claims(lab)[f"{ip.replace('.', '-')}-32"]["spec"]["nodeName"] == other,
                 within=30, what=f"the takeover by {other} recorded in the claim")
        if fault == "link-down":  # cut off from its peers, it says it serves nothing
            wait_for(lambda: agent_get(lab, node, "/readyz")[0] == 503, within=10,
                     what=f"{node}'s agent not ready while its link is down")
        if fault in ("agent-sigkill", "agent-sigterm"):
            # the dead agent's address goes with its lifetime: no lingering holder
            wait_for(lambda: lab.holders(ip) == [other], within=60,
                     what=f"{ip} held by {other} only")


def test_a_node_that_returns_does_not_take_the_ip_back(healthy: Lab) -> None:
    lab = healthy
    with held_service(lab, "no-flap") as (ip, node):
        lab.kill_agent(node)
        other = wait_reachable(lab, ip, within=60, not_from=node)
        lab.restore_node(node)
        time.sleep(8)
        assert lab.holders(ip) == [other]


def arp_responders(lab: Lab, ip: str, seconds: float) -> set[str]:
    """MAC addresses that answer ARP for ip, as seen from the client, over a period."""
    out = subprocess.run(["ip", "netns", "exec", lab.topology.client, sys.executable, "-m",
                          "externalip_lab.arpscan", ip, str(seconds)], capture_output=True,
                         text=True,
                         check=True, timeout=seconds + 30).stdout
    return set(out.split())


def test_a_node_cut_off_from_the_api_keeps_serving(healthy: Lab) -> None:
    """Cut from the API but heard by its peers on the segment: nothing moves,
    not even when its Lease lapses (the lab's Lease lives 8 s), and the
    client keeps getting answers from it the whole time."""
    lab = healthy
    with held_service(lab, "partition") as (ip, node):
        before = claims(lab)[f"{ip.replace('.', '-')}-32"]
        lab.partition(node)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            assert lab.client_get(ip, timeout=1.0) == node
            time.sleep(0.2)
        after = claims(lab)[f"{ip.replace('.', '-')}-32"]
        assert after["spec"]["nodeName"] == node
        assert (after.get("status") or {}).get("term") == (before.get("status") or {}).get(
            "term")
        assert arp_responders(lab, ip, 1.0) == {mac_of(lab, node)}


def test_nothing_moves_without_a_fault_even_under_cpu_load(healthy: Lab) -> None:
    """A busy loop pinned to the CPU of the holder's agent (every thread of it):
    the agent runs late, says so, and nobody takes its address for that."""
    lab = healthy
    with held_service(lab, "calm") as (ip, node):
        terms = {n: ((c.get("status") or {}).get("term"), c["spec"].get("nodeName"))
                 for n, c in claims(lab).items()}
        agent = str(lab.procs[f"agent-{node}"].popen.pid)
        subprocess.run(["taskset", "-a", "-p", "0x1", agent], check=True, capture_output=True)
        burner = subprocess.Popen(["taskset", "0x1", sys.executable, "-c", "while True: pass"])
        try:
            time.sleep(15)
        finally:
            burner.kill()
            burner.wait()
            subprocess.run(["taskset", "-a", "-p", f"{(1 << (os.cpu_count() or 2)) - 1:#x}", agent],
                           check=False, capture_output=True)
        after = {n: ((c.get("status") or {}).get("term"), c["spec"].get("nodeName"))
                 for n, c in claims(lab).items()}
        # (a claim of an earlier test may still be on its way out: compare what stays)
        assert {n: after[n] for n in terms if n in after} == \
            {n: terms[n] for n in terms if n in after}
        assert f"{ip.replace('.', '-')}-32" in after
        assert wait_reachable(lab, ip, within=30) == node


def test_api_server_restart_removes_nothing_and_watches_resume(healthy: Lab) -> None:
    lab = healthy
    assert lab.cp is not None
    with held_service(lab, "cp-restart") as (ip, node):
        monitor = subprocess.Popen(["ip", "netns", "exec", lab.topology.node_ns(node), "ip",
                                    "monitor", "address"], stdout=subprocess.PIPE, text=True)
        try:
            lab.cp.restart_apiserver()
            time.sleep(2)
        finally:
            monitor.terminate()
            events = monitor.communicate(timeout=10)[0]
        assert not any(line.startswith("Deleted") and f" {ip}/" in line
                       for line in events.splitlines()), events
        assert lab.client_get(ip) == node
        lab.cp.apply(service("after-restart"))
        (ip2,) = wait_ingress(lab, "after-restart", within=60)
        wait_reachable(lab, ip2)
        lab.cp.kubectl("delete", "service", "after-restart", "-n", NS)


def test_create_and_delete_loop_leaves_nothing_behind(lab: Lab) -> None:
    assert lab.cp is not None
    names = [f"loop-{i}" for i in range(200)]
    # IPv6: the lab's IPv4 pool has 51 addresses, its IPv6 pool 256
    manifest = "---\n".join(service(n, families=["IPv6"]) for n in names)
    for _ in range(2):
        lab.cp.kubectl("apply", "-f", "-", input=manifest)
        wait_for(lambda: sum(1 for c in claims(lab).values()
                             if any(s.startswith(f"{NS}/loop-") for s in c["spec"].get(
                                 "services", []))) == 200, within=180, what="200 claims")
        lab.cp.kubectl("delete", "-f", "-", "--wait=false", input=manifest)
        wait_for(lambda: not any(any(s.startswith(f"{NS}/loop-") for s in c["spec"].get(
            "services", [])) for c in claims(lab).values()), within=180, what="claims gone")
    def addresses_left() -> list[str]:
        held = []
        for node in lab.node_names:
            out = json.loads(subprocess.run(
                ["ip", "-n", lab.topology.node_ns(node), "-j", "addr", "show", "dev", "eth0"],
                capture_output=True, text=True, check=True).stdout)
            own = set(node_addresses(lab.node_names.index(node) + 1))
            held += [a["local"] for i in out for a in i["addr_info"]
                     if a["local"] not in own and not a["local"].startswith("fe80")]
        return held
    wait_for(lambda: addresses_left() == [], within=60, what="no VIP left on any node")


def test_a_wrong_heartbeat_key_raises_an_alarm_and_moves_nothing(healthy: Lab,
                                                                 tmp_path: Path) -> None:
    """A node restarted with another key: its peers' beats and its own fail
    authentication. That is an alarm (an Event on the IpNode), never silence:
    nothing moves and the node keeps serving."""
    lab = healthy
    with held_service(lab, "wrong-key") as (ip, node):
        (tmp_path / "1").write_text("another-key-" * 4)
        before = claims(lab)[f"{ip.replace('.', '-')}-32"]["spec"]["nodeName"]
        lab.stop_agent(node)
        lab.start_agent(node, f"--peer-key-dir={tmp_path}")
        wait_for(lambda: any(e.get("reason") == "HeartbeatAuthFailed" for e in get(
            lab, "events", "-n", "default")["items"]), within=60,
            what="a HeartbeatAuthFailed Event")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            assert lab.client_get(ip, timeout=1.0) == node
            time.sleep(0.2)
        assert claims(lab)[f"{ip.replace('.', '-')}-32"]["spec"]["nodeName"] == before
        lab.stop_agent(node)  # the healthy fixture starts it again with the lab's key


@contextmanager
def dropping(lab: Lab, node: str, rule: str) -> Iterator[None]:
    """An nftables rule in the node's namespace that drops some heartbeats it receives."""
    netns = lab.topology.node_ns(node)
    table = "inet externalip_e2e_loss"
    script = (f"add table {table}\n"
              f"add chain {table} input {{ type filter hook input priority -10; }}\n"
              f"add rule {table} input udp dport 7473 {rule} drop\n")
    subprocess.run(["ip", "netns", "exec", netns, "nft", "-f", "-"], input=script, text=True,
                   check=True)
    try:
        yield
    finally:
        subprocess.run(["ip", "netns", "exec", netns, "nft", "delete", "table", table],
                       check=False)


@pytest.mark.parametrize("loss", ["lossy-link", "cut-from-one-peer"])
def test_lossy_links_and_partial_partitions_move_nothing(healthy: Lab, loss: str) -> None:
    """A third of the heartbeats lost at one node, or one node deaf to one of its
    peers: the majority of observers still hears everyone, so nothing moves,
    and one MAC answers for the address the whole time."""
    lab = healthy
    with held_service(lab, f"loss-{loss}") as (ip, node):
        before = {n: c["spec"].get("nodeName") for n, c in claims(lab).items()}
        # (a claim of an earlier test may still be on its way out: compare what stays)
        observer = next(n for n in lab.node_names if n != node)
        if loss == "lossy-link":
            rule = "numgen random mod 100 < 33"
        else:
            rule = f"ip saddr {node_addresses(lab.node_names.index(node) + 1)[0]}"
        with dropping(lab, observer, rule):
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                assert lab.client_get(ip, timeout=1.0) == node
                time.sleep(0.2)
            assert arp_responders(lab, ip, 1.0) == {mac_of(lab, node)}
        after = {n: c["spec"].get("nodeName") for n, c in claims(lab).items()}
        assert {n: after[n] for n in before if n in after} == \
            {n: before[n] for n in before if n in after}
        assert f"{ip.replace('.', '-')}-32" in after
