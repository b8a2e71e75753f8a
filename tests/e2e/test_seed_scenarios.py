"""The seed's end-to-end scenarios, as the client sees them over the wire."""

from __future__ import annotations

import ipaddress
import time

import pytest

from externalip_lab.lab import POOL_NAME, Lab
from externalip_lab.topology import POOL4, POOL6
from externalip_lab.topology import ip as ipcmd
from tests.e2e.conftest import (
    NS,
    claims,
    get,
    service,
    wait_ingress,
    wait_reachable,
    wait_unreachable,
)
from tests.helpers import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.netns]


def in_pool4(ip: str) -> bool:
    first, last = (ipaddress.ip_address(a) for a in POOL4)
    return first <= ipaddress.ip_address(ip) <= last


def test_service_reachable_on_its_external_ip_with_one_claim_per_ip(lab: Lab) -> None:
    assert lab.cp is not None
    lab.cp.apply(service("ext", lb=False, external_ips=["192.0.2.180", "192.0.2.181"]))
    for ip in ("192.0.2.180", "192.0.2.181"):
        wait_reachable(lab, ip)
        assert len(lab.holders(ip)) == 1  # only the node the claim is assigned to
    names = {c["spec"]["cidr"]: n for n, c in claims(lab).items()}
    assert names["192.0.2.180/32"] == "192-0-2-180-32"
    assert names["192.0.2.181/32"] == "192-0-2-181-32"
    claim = claims(lab)["192-0-2-180-32"]
    assert lab.holders("192.0.2.180") == [claim["spec"]["nodeName"]]
    lab.cp.kubectl("delete", "service", "ext", "-n", NS)
    wait_unreachable(lab, "192.0.2.180")
    wait_for(lambda: "192-0-2-180-32" not in claims(lab), what="claim deleted")


def test_auto_allocation_from_the_pool_and_release_on_deletion(lab: Lab) -> None:
    assert lab.cp is not None
    lab.cp.apply(service("auto-lb"))
    (ip,) = wait_ingress(lab, "auto-lb")
    assert in_pool4(ip)
    node = wait_reachable(lab, ip)
    assert lab.holders(ip) == [node]
    claim = next(c for c in claims(lab).values() if c["spec"]["cidr"] == f"{ip}/32")
    assert claim["spec"].get("pool") == POOL_NAME
    lab.cp.apply(service("auto-annotated", lb=False, annotations={"external-ip": "auto"}))
    wait_for(lambda: bool(get(lab, "service", "auto-annotated", "-n", NS)["spec"]
                          .get("externalIPs")), what="external IP appended")
    (ext,) = get(lab, "service", "auto-annotated", "-n", NS)["spec"]["externalIPs"]
    assert in_pool4(ext) and ext != ip
    wait_reachable(lab, ext)
    lab.cp.kubectl("delete", "service", "auto-lb", "auto-annotated", "-n", NS)
    wait_unreachable(lab, ip)
    wait_unreachable(lab, ext)
    wait_for(lambda: not any(c["spec"]["cidr"] in (f"{ip}/32", f"{ext}/32")
                             for c in claims(lab).values()), what="claims released")


def test_ipv6_and_dual_stack_services_are_reachable(lab: Lab) -> None:
    assert lab.cp is not None
    lab.cp.apply(service("dual", families=["IPv4", "IPv6"], policy="RequireDualStack"))
    ips = wait_ingress(lab, "dual", count=2)
    v6 = next(i for i in ips if ":" in i)
    v4 = next(i for i in ips if ":" not in i)
    first6, last6 = (ipaddress.ip_address(a) for a in POOL6)
    assert first6 <= ipaddress.ip_address(v6) <= last6
    wait_reachable(lab, v4)
    wait_reachable(lab, v6)
    lab.cp.kubectl("delete", "service", "dual", "-n", NS)
    wait_unreachable(lab, v6)


def test_agent_re_adds_an_address_removed_by_hand(lab: Lab) -> None:
    assert lab.cp is not None
    lab.cp.apply(service("readd"))
    (ip,) = wait_ingress(lab, "readd")
    node = wait_reachable(lab, ip)
    ipcmd("-n", lab.topology.node_ns(node), "addr", "del", f"{ip}/32", "dev", "eth0")
    removed = time.monotonic()
    # kube-proxy would still forward for a client whose ARP cache points at the
    # node: only the address itself, and a client that must ask again, tell
    wait_for(lambda: lab.holders(ip) == [node], within=25, what="address re-added")
    print(f"re-added {time.monotonic() - removed:.2f}s after removal by hand")
    ipcmd("-n", lab.topology.client, "neigh", "flush", "all")
    assert wait_reachable(lab, ip, within=25) == node
    lab.cp.kubectl("delete", "service", "readd", "-n", NS)


def test_orphaned_claims_are_cleaned_when_the_scheduler_missed_the_deletion(
        healthy: Lab) -> None:
    lab = healthy
    assert lab.cp is not None
    lab.cp.apply(service("orphan"))
    (ip,) = wait_ingress(lab, "orphan")
    wait_reachable(lab, ip)
    lab.stop_scheduler(1)
    lab.stop_scheduler(2)
    lab.cp.kubectl("delete", "service", "orphan", "-n", NS)
    time.sleep(1)
    assert any(c["spec"]["cidr"] == f"{ip}/32" for c in claims(lab).values())
    lab.start_scheduler(1)
    wait_for(lambda: not any(c["spec"]["cidr"] == f"{ip}/32" for c in claims(lab).values()),
             within=60, what="orphaned claim deleted")
    wait_unreachable(lab, ip)


def test_leader_loss_during_a_burst_loses_and_doubles_nothing(healthy: Lab) -> None:
    lab = healthy
    assert lab.cp is not None
    names = [f"burst-{i}" for i in range(20)]
    for i, name in enumerate(names):
        lab.cp.apply(service(name))
        if i == 5:
            lease = get(lab, "lease", "-n", "externalip", "externalip-scheduler")
            holder = lease["spec"]["holderIdentity"]
            index = next(i for i in (1, 2) if f"scheduler-{i}" in holder
                         or str(lab.procs[f"scheduler-{i}"].popen.pid) in holder)
            lab.kill_scheduler(index)
    ips = [wait_ingress(lab, n, within=90)[0] for n in names]
    assert len(set(ips)) == len(ips), "an IP was given to two Services"
    for ip in ips[:3] + ips[-3:]:
        wait_reachable(lab, ip)
    lab.cp.kubectl("delete", "service", *names, "-n", NS)
    for ip in ips:
        wait_unreachable(lab, ip)
