"""An address another host uses on the LAN is not placed (issue 12, item 11):
a host outside the cluster holds the address the pool would hand out next;
the agent's probe finds it, the Service gets another address with a Warning
`AddressConflict`, and the client still resolves the foreign host's address
to the foreign host only."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys

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


def test_an_address_in_use_on_the_lan_is_skipped_with_a_warning(lab: Lab) -> None:
    assert lab.cp is not None
    taken = next_free(lab)
    foreign = f"{lab.prefix}-foreign"
    lab.topology.attach_extra(foreign, "vforeign", "192.0.2.98", "2001:db8::98")
    try:
        ip("-n", foreign, "addr", "add", f"{taken}/24", "dev", "eth0")
        foreign_mac = json.loads(ip("-j", "-n", foreign, "link", "show", "dev", "eth0")
                                 .stdout)[0]["address"]
        lab.cp.apply(service("conflicted"))
        wait_for(lambda: any(w.startswith("AddressConflict:") and taken in w
                             for w in warnings(lab, "conflicted")),
                 within=60, what=f"a Warning AddressConflict for {taken} on the Service")
        wait_for(lambda: ingress_is_not(lab, taken), within=60, what="another address")
        (other,) = wait_ingress(lab, "conflicted")
        assert other != taken
        holder = lab.wait_reachable(other)  # the Service answers on its new address
        assert lab.holders(taken) == []  # no node took the foreign host's address
        assert mac_answering(lab, taken) == foreign_mac
        wait_for(lambda: f"{taken.replace('.', '-')}-32" not in claims(lab), within=60,
                 what="the conflicted claim deleted")
        assert holder in lab.node_names
    finally:
        lab.cp.kubectl("delete", "service", "conflicted", "-n", NS, check=False)
        ip("netns", "del", foreign, check=False)
        lab.topology.extra.remove(foreign)


def ingress_is_not(lab: Lab, address: str) -> bool:
    svc = get(lab, "service", "conflicted", "-n", NS)
    ips = [i["ip"] for i in (svc.get("status") or {}).get("loadBalancer", {}).get("ingress")
           or []]
    return bool(ips) and address not in ips
