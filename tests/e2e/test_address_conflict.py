"""Address conflicts on the wire (issue 12, item 11). A host outside the
cluster holds the address the pool would hand out next: the agent's probe
finds it, the Service gets another address with a Warning `AddressConflict`,
and the client still resolves the address to the foreign host only. A host
that later announces an address a node holds raises the same Warning on the
claim; the node keeps the address."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
from collections.abc import Iterator

import pytest

from externalip_lab.lab import Lab
from externalip_lab.topology import POOL4, ip
from tests.e2e.conftest import NS, claims, get, service, wait_ingress
from tests.helpers import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.netns]


def settled(lab: Lab) -> bool:
    """No claim of a deleted Service left, no node holding an address without a
    claim: the next free address is the one the pool gives next."""
    services = {f"{s['metadata']['namespace']}/{s['metadata']['name']}"
                for s in get(lab, "services", "-A")["items"]}
    current = claims(lab).values()
    ips = {c["spec"]["cidr"].split("/")[0] for c in current}
    inventories = {a for n in get(lab, "ipnodes")["items"]
                   for a in (n.get("status") or {}).get("addresses") or ()}
    return all(set(c["spec"].get("services") or ()) <= services for c in current) \
        and inventories <= ips


def next_free(lab: Lab) -> str:
    wait_for(lambda: settled(lab), within=60, what="claims and inventories settled")
    taken = {c["spec"]["cidr"].split("/")[0] for c in claims(lab).values()}
    first, last = (int(ipaddress.ip_address(a)) for a in POOL4)
    return next(str(ipaddress.ip_address(n)) for n in range(first, last + 1)
                if str(ipaddress.ip_address(n)) not in taken)


def warnings(lab: Lab, name: str) -> list[str]:
    items = get(lab, "events", "-n", NS, "--field-selector",
                f"involvedObject.name={name},type=Warning")["items"]
    return [f"{e['reason']}: {e['message']}" for e in items]


def mac_answering(lab: Lab, address: str) -> str:
    """The MAC that answers an ARP probe for `address` from the client ("" if none)."""
    code = ("import ipaddress,sys\nfrom externalip.net.probe import probe_now\n"
            "found = probe_now('eth0', [ipaddress.ip_address(sys.argv[1])], 0.5)\n"
            "print(':'.join(f'{b:02x}' for b in next(iter(found.values()), b'')))")
    return subprocess.run(["ip", "netns", "exec", lab.topology.client, sys.executable, "-c",
                           code, address], capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.fixture
def foreign(lab: Lab) -> Iterator[str]:
    """A host outside the cluster on the lab's segment (its namespace)."""
    netns = f"{lab.prefix}-foreign"
    lab.topology.attach_extra(netns, "vforeign", "192.0.2.98", "2001:db8::98")
    try:
        yield netns
    finally:
        ip("netns", "del", netns, check=False)
        lab.topology.extra.remove(netns)


def mac_in(netns: str) -> str:
    return str(json.loads(ip("-j", "-n", netns, "link", "show", "dev", "eth0").stdout)[0]
               ["address"])


def test_an_address_in_use_on_the_lan_is_skipped_with_a_warning(lab: Lab, foreign: str) -> None:
    assert lab.cp is not None
    taken = next_free(lab)
    ip("-n", foreign, "addr", "add", f"{taken}/24", "dev", "eth0")
    try:
        lab.cp.apply(service("conflicted"))
        wait_for(lambda: any(w.startswith("AddressConflict:") and taken in w
                             for w in warnings(lab, "conflicted")),
                 within=60, what=f"a Warning AddressConflict for {taken} on the Service")
        wait_for(lambda: ingress_is_not(lab, taken), within=60, what="another address")
        (other,) = wait_ingress(lab, "conflicted")
        assert other != taken
        holder = lab.wait_reachable(other)  # the Service answers on its new address
        assert holder in lab.node_names
        assert lab.holders(taken) == []  # no node took the foreign host's address
        assert mac_answering(lab, taken) == mac_in(foreign)
        wait_for(lambda: f"{taken.replace('.', '-')}-32" not in claims(lab), within=60,
                 what="the conflicted claim deleted")
    finally:
        lab.cp.kubectl("delete", "service", "conflicted", "-n", NS, check=False)


ANNOUNCE = """
import ipaddress, socket, sys
from externalip.net.announce import ARP_REQUEST, arp_frame
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
s.bind(("eth0", 0x0806))
for _ in range(3):
    s.send(arp_frame(s.getsockname()[4], ipaddress.ip_address(sys.argv[1]), ARP_REQUEST))
"""


def test_a_foreign_announcement_of_a_held_address_raises_a_warning(lab: Lab,
                                                                   foreign: str) -> None:
    """A host that announces an address a node holds (gratuitous ARP with our
    address as sender): Warning AddressConflict on the claim; the node keeps it."""
    assert lab.cp is not None
    lab.cp.apply(service("announced"))
    (vip,) = wait_ingress(lab, "announced")
    holder = lab.wait_settled(vip)
    claim = f"{vip.replace('.', '-')}-32"
    try:
        subprocess.run(["ip", "netns", "exec", foreign, sys.executable, "-c", ANNOUNCE, vip],
                       check=True, timeout=30)
        mac = mac_in(foreign)
        wait_for(lambda: any(e["reason"] == "AddressConflict" and mac in e["message"]
                             for e in get(lab, "events", "-n", "default", "--field-selector",
                                          f"involvedObject.name={claim}")["items"]),
                 within=60, what=f"a Warning AddressConflict on claim {claim}")
        assert lab.holders(vip) == [holder]  # kept: the API says it is ours
    finally:
        lab.cp.kubectl("delete", "service", "announced", "-n", NS, check=False)


def ingress_is_not(lab: Lab, address: str) -> bool:
    svc = get(lab, "service", "conflicted", "-n", NS)
    ips = [i["ip"] for i in (svc.get("status") or {}).get("loadBalancer", {}).get("ingress")
           or []]
    return bool(ips) and address not in ips
