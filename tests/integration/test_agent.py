"""The claims-mode agent as a process in a node namespace, against the real API server."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.resources.coordination_v1 import Lease
from lightkube.types import PatchType

from externalip.core.model import NODE_LABEL, ClaimSpec, claim_labels
from externalip.kube.resources import IpClaimResource, IpNodeResource
from externalip.net.announce import ARP_REPLY, ARP_REQUEST, arp_frame, parse_arp, parse_na
from externalip_lab.apiproxy import ApiProxy
from externalip_lab.controlplane import ControlPlane
from externalip_lab.netns import Capture, entered, ip
from tests.helpers import eventually
from tests.integration.agentrig import NAMESPACE, Rig
from tests.integration.scheduler_harness import api_requests

pytestmark = [pytest.mark.netns, pytest.mark.integration]


@pytest.fixture
async def rig(crds: ControlPlane, kube: AsyncClient, unique: str,
              tmp_path: Path) -> AsyncIterator[Rig]:
    r = Rig(crds, kube, unique, tmp_path)
    try:
        yield r
    finally:
        await r.close()
        print(r.log()[-6000:])  # shown by pytest only when the test failed


async def until_true(check, within: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    """Poll an async check until it returns true (then True) or time runs out (False)."""
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.1)
    return True


async def node_addresses(kube: AsyncClient, node: str) -> list[str]:
    try:
        obj = await kube.get(IpNodeResource, node)
    except ApiError as exc:
        if exc.status.code == 404:
            return ["(no IpNode yet)"]
        raise
    return list((obj.get("status") or {}).get("addresses") or [])


def garp_of(vip: str, op: int):  # type: ignore[no-untyped-def]
    def match(frame: bytes) -> object:
        f = parse_arp(frame)
        return f if f and str(f["sender_ip"]) == vip and f["op"] == op else None
    return match


async def test_claims_follow_assignment(rig: Rig, kube: AsyncClient) -> None:
    # Long resync and lifetime: a fast re-add below can only come from netlink events.
    rig.start("--resync=120s", "--addr-lifetime=120s", "--hb=1s")
    with Capture(rig.client, rig.cdev) as cap:
        mine = await rig.claim("a", "192.0.2.50/32")
        other = await rig.claim("b", "192.0.2.51/32", node=f"{rig.prefix}-elsewhere")
        await eventually(lambda: "192.0.2.50" in rig.addresses(), 30, "claim on the interface")
        for op in (ARP_REQUEST, ARP_REPLY):
            f = await cap.until(garp_of("192.0.2.50", op))
            assert f, f"no gratuitous ARP op {op} captured"
            assert f["sender_mac"] == rig.mac and str(f["target_ip"]) == "192.0.2.50"
    info = rig.addresses()["192.0.2.50"]
    assert info.get("deprecated") and info["preferred_life_time"] == 0
    assert "192.0.2.51" not in rig.addresses()  # assigned to another node

    async def ready() -> bool:
        s = await rig.status(mine)
        return bool(s.get("ready")) and s.get("holder") == rig.node_name and bool(s.get("since"))
    assert await until_true(ready), await rig.status(mine)
    assert not (await rig.status(other)).get("ready")
    # the same status write carries the conditions `kubectl wait` reads (issue 15)
    waited = rig.cp.kubectl("wait", "--for=condition=Ready", f"ipclaim/{mine}", "--timeout=10s",
                            check=False)
    assert waited.returncode == 0, waited.stderr
    conds = {c["type"]: c for c in (await rig.status(mine))["conditions"]}
    assert conds["Scheduled"]["status"] == "True" and conds["Ready"]["reason"] == "Held"

    async def inventory_has_it() -> bool:
        return await node_addresses(kube, rig.node_name) == ["192.0.2.50"]
    assert await until_true(inventory_has_it, 30)  # at the --status-interval pace (10s)
    node = await kube.get(IpNodeResource, rig.node_name)
    assert node["status"]["link"] == rig.dev and node["status"]["agentVersion"]
    # the node's own addresses, for the scheduler never to allocate (issue 12, item 2);
    # loopback and link-local ones are left out
    assert node["status"]["nodeAddresses"] == ["192.0.2.10", "2001:db8::10"]
    lease = await kube.get(Lease, rig.node_name, namespace=NAMESPACE)
    assert lease.spec is not None and lease.spec.holderIdentity == rig.node_name
    first_renew = lease.spec.renewTime
    await asyncio.sleep(2.5)
    lease = await kube.get(Lease, rig.node_name, namespace=NAMESPACE)
    assert lease.spec is not None and lease.spec.renewTime != first_renew

    # removed by hand: back within seconds (netlink event), far below --resync
    ip("addr", "del", "192.0.2.50/32", "dev", rig.dev, netns=rig.node)
    await eventually(lambda: "192.0.2.50" in rig.addresses(), 5, "re-added after hand removal")

    # moved away: removed, and the IpNode inventory follows
    await rig.move(mine, f"{rig.prefix}-elsewhere")
    await eventually(lambda: "192.0.2.50" not in rig.addresses(), 10, "removed after move")
    async def inventory_empty() -> bool:
        return await node_addresses(kube, rig.node_name) == []
    assert await until_true(inventory_empty, 30)

    # deleted: removed
    again = await rig.claim("c", "192.0.2.52/32")
    await eventually(lambda: "192.0.2.52" in rig.addresses(), 10, "second claim added")
    await kube.delete(IpClaimResource, again)
    await eventually(lambda: "192.0.2.52" not in rig.addresses(), 10, "removed after delete")
    assert rig.proc is not None and rig.proc.poll() is None


async def test_restart_adopts_without_removal(rig: Rig) -> None:
    rig.start()
    await rig.claim("a", "192.0.2.60/32")
    await rig.claim("b", "2001:db8::60/128")
    await eventually(lambda: {"192.0.2.60", "2001:db8::60"} <= set(rig.addresses()), 30,
                     "claims on the interface")
    monitor = rig.ns.popen(rig.node, ["ip", "monitor", "address"], stdout=subprocess.PIPE)
    try:
        await asyncio.sleep(0.3)
        assert rig.stop(signal.SIGTERM) == 0
        assert {"192.0.2.60", "2001:db8::60"} <= set(rig.addresses())  # SIGTERM leaves them
        rig.start()
        await eventually(lambda: "adopted existing addresses" in rig.log(), 30, "adoption")
        await asyncio.sleep(3)  # a few reconciles and refreshes of the new agent
    finally:
        monitor.terminate()
        out = monitor.communicate(timeout=10)[0].decode()
    deleted = [line for line in out.splitlines() if line.startswith("Deleted")]
    assert not deleted, deleted
    assert {"192.0.2.60", "2001:db8::60"} <= set(rig.addresses())
    assert "address added" not in rig.log().split("agent starting")[-1]  # adopted, not re-added


async def test_restart_lets_go_of_what_moved_meanwhile(rig: Rig) -> None:
    # Long lifetime and resync: a fast removal can only come from the first
    # reconcile after the claims are listed, not from a periodic pass.
    rig.start("--resync=120s", "--addr-lifetime=120s")
    name = await rig.claim("a", "192.0.2.65/32")
    await rig.claim("b", "192.0.2.66/32")
    await eventually(lambda: {"192.0.2.65", "192.0.2.66"} <= set(rig.addresses()), 30,
                     "claims on the interface")
    assert rig.stop(signal.SIGTERM) == 0
    await rig.move(name, f"{rig.prefix}-elsewhere")  # the scheduler moved it meanwhile
    rig.start("--resync=120s", "--addr-lifetime=120s")
    await eventually(lambda: "192.0.2.65" not in rig.addresses(), 15,
                     "moved claim removed right after restart")
    assert "192.0.2.66" in rig.addresses()
    await asyncio.sleep(1)
    assert rig.proc is not None and rig.proc.poll() is None  # still running after sync


async def test_foreign_addresses_survive_and_own_address_is_refused(
        rig: Rig, crds: ControlPlane) -> None:
    ip("addr", "add", "192.0.2.70/32", "dev", rig.dev, netns=rig.node)
    before = rig.addresses()
    rig.start()
    own = await rig.claim("own", "192.0.2.10/32")  # the node's own address
    theirs = await rig.claim("theirs", "192.0.2.70/32")
    ok = await rig.claim("ok", "192.0.2.71/32")
    await eventually(lambda: "192.0.2.71" in rig.addresses(), 30, "valid claim added")
    for name in (own, theirs):
        async def refused(name: str = name) -> bool:
            return "own address" in (await rig.status(name)).get("message", "")
        await until_true(refused)
        status = await rig.status(name)
        assert not status.get("ready") and "own address" in status["message"], status
    events = json.loads(crds.kubectl("get", "events", "-n", "default", "-o", "json").stdout)
    reasons = {(e["involvedObject"]["name"], e["reason"]) for e in events["items"]}
    assert (own, "AddressRefused") in reasons and (theirs, "AddressRefused") in reasons
    assert "claim refused" in rig.log()
    # after everything (claims gone, agent killed) the foreign ones are untouched
    for name in (own, theirs, ok):
        await rig.kube.delete(IpClaimResource, name)
    await eventually(lambda: "192.0.2.71" not in rig.addresses(), 10, "ok claim removed")
    rig.stop(signal.SIGKILL)
    after = rig.addresses()
    for vip in ("192.0.2.10", "192.0.2.70"):
        assert after[vip]["prefixlen"] == before[vip]["prefixlen"]
        assert after[vip]["valid_life_time"] == before[vip]["valid_life_time"] > 10**9


async def test_ipv6_claim_without_dad_and_na_captured(rig: Rig) -> None:
    rig.start()
    with Capture(rig.client, rig.cdev) as cap:
        await rig.claim("v6", "2001:db8::80/128")
        await eventually(lambda: "2001:db8::80" in rig.addresses(), 30, "IPv6 claim added")
        info = rig.addresses()["2001:db8::80"]
        assert not info.get("tentative") and info.get("nodad"), info
        na = await cap.until(lambda f: (x := parse_na(f)) and str(x["target"]) ==
                             "2001:db8::80" and x)
    assert na, "no unsolicited NA captured"
    assert na["target_mac"] == rig.mac and na["eth_src"] == rig.mac
    assert na["override"] and na["hop_limit"] == 255 and str(na["dst"]) == "ff02::1"


async def test_killed_agent_addresses_expire(rig: Rig) -> None:
    lifetime = 3
    rig.start(f"--addr-lifetime={lifetime}s")
    await rig.claim("a", "192.0.2.90/32")
    await eventually(lambda: "192.0.2.90" in rig.addresses(), 30, "claim added")
    await asyncio.sleep(lifetime + 1)  # alive: refreshed, still there after one lifetime
    assert "192.0.2.90" in rig.addresses()
    rig.stop(signal.SIGKILL)
    await eventually(lambda: "192.0.2.90" not in rig.addresses(), lifetime + 2,
                     "expired after the agent died")


def reconnect(rig: Rig) -> None:
    rig.proxy = ApiProxy(rig.node, rig.proxy.target_port, rig.proxy.listen_port).start()


async def test_api_loss_keeps_addresses_by_default(rig: Rig) -> None:
    # Lifetime shorter than the outage: still there means the agent kept refreshing.
    rig.start("--lease-duration=2s", "--hb=0.5s", "--addr-lifetime=3s",
              "--garp-interval=0.5s")
    name = await rig.claim("a", "192.0.2.110/32")
    await eventually(lambda: "192.0.2.110" in rig.addresses(), 30, "claim added")
    await asyncio.sleep(3.5)  # past the burst that follows the add
    with Capture(rig.client, rig.cdev) as cap:  # periodic announcements flow...
        assert await cap.until(garp_of("192.0.2.110", ARP_REQUEST), within=3)
    rig.proxy.stop()  # partition: node up, API unreachable
    await rig.move(name, f"{rig.prefix}-elsewhere")  # the scheduler moves it meanwhile
    await asyncio.sleep(3)  # the Lease (2 s) has lapsed
    with Capture(rig.client, rig.cdev) as cap:  # ...and stop once the Lease has lapsed
        assert not await cap.until(garp_of("192.0.2.110", ARP_REQUEST), within=3)
    assert "192.0.2.110" in rig.addresses()
    assert rig.proc is not None and rig.proc.poll() is None  # outage is not a crash
    reconnect(rig)
    await eventually(lambda: "192.0.2.110" not in rig.addresses(), 40,
                     "moved claim removed once the API is back")


async def test_a_healed_agent_reads_the_claims_before_it_holds_a_yielded_address(
        rig: Rig) -> None:
    """Issue 12, item 1, without heartbeat keys (the Lease fence): cut off from
    the API, the agent yields an address another MAC announces; once its Lease
    renews it must not take the address back on the claims it had before the
    cut (they say "ours"), but only on claims read since. (A 3 s lifetime: a
    pass every second, so one runs between the renewal and the watch's return.)"""
    rig.start("--lease-duration=2s", "--hb=0.5s", "--addr-lifetime=3s")
    name = await rig.claim("a", "192.0.2.112/32")
    await eventually(lambda: "192.0.2.112" in rig.addresses(), 30, "claim added")
    rig.proxy.stop()
    await rig.move(name, f"{rig.prefix}-elsewhere")  # the scheduler moved it meanwhile
    await asyncio.sleep(2.5)  # renewals failing: a foreign announcement means "moved"
    with entered(rig.client):
        sender = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    with sender:
        sender.bind((rig.cdev, 0))
        foreign = arp_frame(b"\x02\x00\x00\x00\x00\x99", ipaddress.IPv4Address("192.0.2.112"),
                            ARP_REQUEST)
        sender.send(foreign)
    await eventually(lambda: "192.0.2.112" not in rig.addresses(), 10, "yielded")
    reconnect(rig)  # the Lease renews within --hb; the claims' watch within its backoff
    await asyncio.sleep(8)  # (at most 5 s)
    assert rig.log().count("address added") == 1, "a yielded address came back on stale claims"
    assert "192.0.2.112" not in rig.addresses()


async def test_api_loss_release_lets_go_after_lease_duration(rig: Rig) -> None:
    rig.start("--lease-duration=2s", "--hb=0.5s", "--addr-lifetime=30s", "--api-loss=release")
    await rig.claim("a", "192.0.2.111/32")
    await eventually(lambda: "192.0.2.111" in rig.addresses(), 30, "claim added")
    rig.proxy.stop()
    await eventually(lambda: "192.0.2.111" not in rig.addresses(), 10,
                     "released after the lease duration")
    assert "lease expired, releasing addresses" in rig.log()
    reconnect(rig)
    await eventually(lambda: "192.0.2.111" in rig.addresses(), 40, "held again once renewed")


async def test_metrics_and_health(rig: Rig) -> None:
    rig.start("--metrics-addr=127.0.0.1:9440", "--garp-interval=0.5s")
    await rig.claim("a", "192.0.2.120/32")
    await eventually(lambda: "192.0.2.120" in rig.addresses(), 30, "claim added")

    def get(path: str) -> tuple[int, str]:
        with entered(rig.node):
            sock = socket.create_connection(("127.0.0.1", 9440), timeout=5)
        with sock:
            sock.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        head, _, body = data.decode().partition("\r\n\r\n")
        return int(head.split()[1]), body

    await eventually(lambda: get("/readyz")[0] == 200, 10, "ready")
    assert get("/healthz")[0] == 200
    await asyncio.sleep(1.5)  # periodic announcements (--garp-interval) add up
    _, text = get("/metrics")
    values = {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
              if line.startswith("externalip_")}
    assert values["externalip_addresses_held"] == 1
    assert values['externalip_announcements_total{family="4"}'] >= 6
    assert "externalip_reconcile_errors_total" in text


async def test_link_flap_keeps_node_address_first_and_vips_come_back(rig: Rig) -> None:
    rig.start("--resync=120s", "--addr-lifetime=120s")
    await rig.claim("a", "192.0.2.130/32")
    await rig.claim("b", "2001:db8::130/128")
    await eventually(lambda: {"192.0.2.130", "2001:db8::130"} <= set(rig.addresses()), 30,
                     "claims on the interface")
    ip("link", "set", rig.dev, "down", netns=rig.node)
    ip("link", "set", rig.dev, "up", netns=rig.node)
    # IPv6 addresses are flushed on link down; the link event brings ours back
    await eventually(lambda: {"192.0.2.130", "2001:db8::130"} <= set(rig.addresses()), 10,
                     "VIPs back after the flap")
    first = ip("-4", "-o", "addr", "show", "dev", rig.dev, netns=rig.node).stdout.splitlines()[0]
    assert "192.0.2.10/24" in first, first
    route = ip("route", "get", "192.0.2.20", netns=rig.node).stdout
    assert "src 192.0.2.10" in route, route


async def test_unknown_link_reported_and_deleted_ipnode_recreated(rig: Rig,
                                                                   kube: AsyncClient) -> None:
    rig.start()
    bad = await rig.claim("bad", "192.0.2.140/32", link="nosuch0")

    async def reported() -> bool:
        status = await rig.status(bad)
        return not status.get("ready") and "nosuch0" in status.get("message", "")
    assert await until_true(reported), await rig.status(bad)

    async def inventory(expected: list[str]) -> bool:
        return await node_addresses(kube, rig.node_name) == expected
    assert await until_true(lambda: inventory([]))
    await kube.delete(IpNodeResource, rig.node_name)  # e.g. by an administrator
    await rig.claim("ok", "192.0.2.141/32")
    # the first write after the deletion fails (404), the next pass recreates it
    assert await until_true(lambda: inventory(["192.0.2.141"]), 30)


async def test_a_node_name_longer_than_a_label_value_works(
        crds: ControlPlane, kube: AsyncClient, unique: str, tmp_path: Path) -> None:
    """Issue 12, item 15: a valid 100-character Node name selects, holds and
    reports its claims like any other."""
    long_name = f"{unique}-" + "n" * 60 + ".example-of-a-long-domain.internal"
    assert len(long_name) > 63
    r = Rig(crds, kube, unique, tmp_path, node_name=long_name)
    try:
        r.start("--hb=1s")
        mine = await r.claim("a", "192.0.2.50/32")
        await eventually(lambda: "192.0.2.50" in r.addresses(), 30, "claim on the interface")

        async def ready() -> bool:
            s = await r.status(mine)
            return bool(s.get("ready")) and s.get("holder") == long_name
        assert await until_true(ready), await r.status(mine)
        lease = await kube.get(Lease, long_name, namespace=NAMESPACE)
        assert lease.spec is not None and lease.spec.holderIdentity == long_name
        # no refused list or write (a 400 Bad Request, a label value too long)
        assert not re.search(r"\b400\b|Bad Request", r.log())
        assert "must be no more than 63" not in r.log()
    finally:
        await r.close()


async def hand_over(kube: AsyncClient, name: str, old: str, new: str) -> None:
    """What the scheduler writes when `old` is drained."""
    claim = await kube.get(IpClaimResource, name)
    spec = ClaimSpec.from_dict({**claim["spec"], "nodeName": new, "handoverFrom": old})
    gone = {k: None for k in (claim.metadata.labels or {}) if k != NODE_LABEL}
    await kube.patch(IpClaimResource, name, {
        "metadata": {"labels": {**gone, **claim_labels(spec)}},
        "spec": {"nodeName": new, "handoverFrom": old}}, patch_type=PatchType.MERGE)


async def test_the_drained_agent_keeps_the_address_until_the_new_holder_is_ready_and_a_delay(
        rig: Rig, kube: AsyncClient) -> None:
    rig.start("--handover-delay=2s")
    name = await rig.claim("a", "192.0.2.80/32")
    await eventually(lambda: "192.0.2.80" in rig.addresses(), 30, "held")
    new = f"{rig.prefix}-new"
    await hand_over(kube, name, rig.node_name, new)
    await asyncio.sleep(3)  # more than the delay: the new holder is not ready yet
    assert "192.0.2.80" in rig.addresses()
    assert (await rig.status(name))["holder"] == rig.node_name  # it wrote nothing since
    await kube.patch(IpClaimResource.Status, name, {"status": {"ready": True, "holder": new}},
                     patch_type=PatchType.MERGE)
    ready = time.monotonic()
    await eventually(lambda: "192.0.2.80" not in rig.addresses(), 15, "let go after the delay")
    waited = time.monotonic() - ready
    assert waited >= 1.9, waited  # not before the hand-over delay
    assert (await rig.status(name))["holder"] == new  # the new holder's status stands
    assert "going quiet" not in rig.log()  # nobody announced on this wire: the status did it


async def test_a_burst_of_claims_costs_one_status_write_each_and_a_paced_inventory(
        rig: Rig, kube: AsyncClient) -> None:
    """Issue 16: a burst of new claims costs one status patch per claim, and
    the IpNode inventory waits for its pace (here longer than the test): it is
    written once, on SIGTERM, with everything; a pace that runs out writes
    the latest state by itself."""
    rig.start("--status-interval=10m")

    async def inventory(expected: set[str]) -> bool:
        return set(await node_addresses(kube, rig.node_name)) == expected
    assert await until_true(lambda: inventory(set()), 30)  # the first write: at once
    before = api_requests(rig.cp)
    wanted = {f"192.0.2.{100 + i}" for i in range(20)}
    names = await asyncio.gather(*(rig.claim(f"b{i}", f"{vip}/32")
                                   for i, vip in enumerate(sorted(wanted))))
    await eventually(lambda: wanted <= set(rig.addresses()), 30, "the burst on the interface")

    async def all_ready() -> bool:
        return all([(await rig.status(n)).get("ready") for n in names])
    assert await until_true(all_ready, 30)
    assert await inventory(set())  # held back by the pace, on purpose
    assert rig.stop(signal.SIGTERM) == 0
    assert await inventory(wanted)  # the stopping agent wrote what it held back
    writes = api_requests(rig.cp) - before
    assert writes[("PATCH", "ipclaims/status")] == len(names), writes
    assert writes[("PATCH", "ipnodes/status")] == 1, writes

    # restarted with a short pace: half the claims go, the inventory follows by itself
    rig.start("--status-interval=1s")
    for name in names[:10]:
        await kube.delete(IpClaimResource, name)
    assert await until_true(lambda: inventory(set(sorted(wanted)[10:])), 30)
