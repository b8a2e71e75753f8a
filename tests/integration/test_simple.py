"""Simple mode as a process in a node namespace, against the real API server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from lightkube import AsyncClient
from lightkube.models.core_v1 import ServicePort, ServiceSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Namespace, Service
from lightkube.types import PatchType

from externalip.net.announce import parse_arp
from externalip_lab.controlplane import ControlPlane
from externalip_lab.netns import Capture, ip
from tests.helpers import eventually
from tests.integration.agentrig import Rig

pytestmark = [pytest.mark.netns, pytest.mark.integration]


@pytest.fixture
async def rig(control_plane: ControlPlane, kube: AsyncClient, unique: str,
              tmp_path: Path) -> AsyncIterator[Rig]:
    r = Rig(control_plane, kube, unique, tmp_path, program="simple")
    await kube.create(Namespace(metadata=ObjectMeta(name=unique)))
    try:
        yield r
    finally:
        await r.close()
        await kube.delete(Namespace, unique)  # never finishes (no controller-manager)
        for svc in [s async for s in kube.list(Service, namespace=unique)]:
            assert svc.metadata is not None and svc.metadata.name is not None
            await kube.delete(Service, svc.metadata.name, namespace=unique)
        print(r.log()[-6000:])


async def service(kube: AsyncClient, ns: str, name: str, ips: list[str],
                  type_: str = "ClusterIP") -> None:
    await kube.create(Service(
        metadata=ObjectMeta(name=name, namespace=ns),
        spec=ServiceSpec(type=type_, ports=[ServicePort(port=80)], externalIPs=ips or None,
                         ipFamilyPolicy="SingleStack")))


async def set_ips(kube: AsyncClient, ns: str, name: str, ips: list[str]) -> None:
    await kube.patch(Service, name, {"spec": {"externalIPs": ips}}, namespace=ns,
                     patch_type=PatchType.MERGE)


def held(rig: Rig) -> set[str]:
    return {a for a, info in rig.addresses().items() if info.get("dynamic")}


async def test_simple_mode_follows_services(rig: Rig, kube: AsyncClient,
                                            control_plane: ControlPlane) -> None:
    ns = rig.prefix
    ip("addr", "add", "192.0.2.99/32", "dev", rig.dev, netns=rig.node)  # not ours
    rig.start("--resync=60s")
    with Capture(rig.client, rig.cdev) as cap:
        await service(kube, ns, "one", ["192.0.2.100", "2001:db8::100"])
        await eventually(lambda: {"192.0.2.100", "2001:db8::100"} <= held(rig), 30,
                         "external IPs held")
        garp = await cap.until(lambda f: (x := parse_arp(f)) and str(x["sender_ip"]) ==
                               "192.0.2.100" and x)
        assert garp and garp["sender_mac"] == rig.mac
    addrs = rig.addresses()
    assert addrs["192.0.2.100"]["prefixlen"] == 32 and addrs["2001:db8::100"]["prefixlen"] == 128
    assert not addrs["2001:db8::100"].get("tentative")
    # the port guard (issue 12, item 10) opens the Service's port only, and
    # never covers the node's own address
    guard = rig.ns.exec(rig.node, ["nft", "list", "table", "inet", "externalip_guard"]).stdout
    assert "192.0.2.100 . tcp . 80" in guard and "2001:db8::100 . tcp . 80" in guard
    assert "192.0.2.99" not in guard

    # update: the old address goes, the new one comes
    await set_ips(kube, ns, "one", ["192.0.2.101"])
    await eventually(lambda: held(rig) == {"192.0.2.101"}, 10, "update applied")
    # shared by two Services: stays until the last one lets go
    await service(kube, ns, "two", ["192.0.2.101", "192.0.2.10", "192.0.2.99"])
    await kube.delete(Service, "one", namespace=ns)
    await eventually(lambda: "address removed" in rig.log() and "service address refused"
                     in rig.log(), 10, "reconciled after delete")
    await asyncio.sleep(1)  # several reconciles after the delete
    assert held(rig) == {"192.0.2.101"}
    # the node's own address and a foreign one: refused with an Event on the Service
    events: dict[str, Any] = json.loads(control_plane.kubectl(
        "get", "events", "-n", ns, "-o", "json").stdout)
    assert any(e["reason"] == "AddressRefused" and e["involvedObject"]["name"] == "two"
               for e in events["items"])
    await kube.delete(Service, "two", namespace=ns)
    await eventually(lambda: held(rig) == set(), 10, "last Service gone")
    addrs = rig.addresses()
    assert "192.0.2.10" in addrs and addrs["192.0.2.99"]["valid_life_time"] > 10**9


async def test_simple_mode_lb_ingress_on_lo(rig: Rig, kube: AsyncClient) -> None:
    ns = rig.prefix
    rig.dev = "lo"  # the ECMP/BGP scheme: /32s on lo, nothing announced
    rig.start("--lb-ingress", "--resync=60s")
    with Capture(rig.client, rig.cdev) as cap:
        await service(kube, ns, "lb", [], type_="LoadBalancer")
        await kube.patch(Service.Status, "lb", {"status": {"loadBalancer": {"ingress": [
            {"ip": "203.0.113.7", "ipMode": "VIP"}]}}}, namespace=ns,
            patch_type=PatchType.MERGE)
        await eventually(lambda: "203.0.113.7" in held(rig), 30, "ingress IP held on lo")
        assert not await cap.until(lambda f: (x := parse_arp(f)) and str(x["sender_ip"]) ==
                                   "203.0.113.7", within=2)
    await kube.delete(Service, "lb", namespace=ns)
    await eventually(lambda: "203.0.113.7" not in held(rig), 10, "removed with the Service")
