"""The address cache kept from netlink notifications (issue 16, item 5).

Behaviour, not timing: after any change, made by us or by someone else, to an
address, a link's state or a link's existence, what the cache says equals
what the kernel says, and it got there without dumping the addresses again.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
from collections.abc import Iterator

import pytest

from externalip.core.holding import Want
from externalip.net.addrcache import NetEvent
from externalip.net.holder import AddressHolder
from externalip.net.netlink import PROTO, Netlink
from externalip_lab.netns import NetnsSet, entered, ip

pytestmark = pytest.mark.netns
IF = ipaddress.ip_interface


class Node:
    def __init__(self, ns: NetnsSet, prefix: str) -> None:
        self.ns, self.prefix = ns, prefix
        self.node, self.client = ns.namespace("node"), ns.namespace("client")
        self.dev = f"{prefix}n"
        ns.veth(self.node, self.dev, self.client, f"{prefix}c")
        ns.addr(self.node, self.dev, "192.0.2.10/24")
        ns.addr(self.node, self.dev, "2001:db8::10/64", "nodad")

    def kernel(self) -> set[tuple[int, str]]:
        """(ifindex, ip/prefix) of every address, as iproute2 reads them."""
        links = json.loads(ip("-j", "addr", "show", netns=self.node).stdout)
        return {(link["ifindex"], f"{a['local']}/{a['prefixlen']}")
                for link in links for a in link.get("addr_info", [])}


def cached(holder: AddressHolder) -> set[tuple[int, str]]:
    return {(a.ifindex, str(a.interface)) for a in holder.netlink.addresses()}


def ours(holder: AddressHolder) -> set[str]:
    return {str(a.interface) for a in holder.netlink.addresses() if a.proto == PROTO}


@pytest.fixture
def node(unique: str) -> Iterator[Node]:
    with NetnsSet(unique) as ns:
        yield Node(ns, unique)


async def holding(node: Node, wants: list[Want]) -> tuple[AddressHolder, list[NetEvent],
                                                          asyncio.Task[None]]:
    """A holder in the node namespace, its cache followed as the agent does."""
    kick, heard = asyncio.Event(), []
    with entered(node.node):
        holder = AddressHolder(Netlink(), 30)
        await holder.reconcile(wants)
    task = asyncio.ensure_future(holder.watch(kick))
    await asyncio.sleep(0.1)
    previous = holder.netlink.cache.on_event

    def record(event: NetEvent) -> None:
        heard.append(event)
        previous(event)
    holder.netlink.cache.on_event = record
    return holder, heard, task


async def settle(holder: AddressHolder, node: Node) -> None:
    """The cache agrees with the kernel again (IPv6 notifies from a work queue,
    link-local addresses after DAD: give it a few seconds)."""
    for _ in range(50):
        await asyncio.sleep(0.1)  # notifications are read by the event loop's reader
        if cached(holder) == node.kernel():
            return
    assert cached(holder) == node.kernel()


async def test_follows_every_change_without_dumping_again(node: Node) -> None:
    wants = [Want(IF("192.0.2.90/32"), node.dev, ("a",)),
             Want(IF("2001:db8::90/128"), node.dev, ("b",))]
    holder, heard, task = await holding(node, wants)
    try:
        assert cached(holder) == node.kernel()
        assert (holder.netlink.cache.dumps, len(holder.held)) == (1, 2)
        assert ours(holder) == {"192.0.2.90/32", "2001:db8::90/128"}
        # someone else removes ours, adds theirs
        ip("addr", "del", "192.0.2.90/32", "dev", node.dev, netns=node.node)
        ip("addr", "add", "192.0.2.91/32", "dev", node.dev, netns=node.node)
        await settle(holder, node)
        assert cached(holder) == node.kernel()
        assert NetEvent("addr-removed", heard[0].ifindex, "192.0.2.90/32", ours=True) in heard
        assert any(e.kind == "addr-added" and e.address == "192.0.2.91/32" and not e.ours
                   for e in heard)
        # the holder puts ours back from the cache's view, and leaves theirs alone
        with entered(node.node):
            result = await holder.reconcile(wants)
        assert [str(w.interface) for w in result.plan.add] == ["192.0.2.90/32"]
        assert cached(holder) == node.kernel()
        assert ours(holder) == {"192.0.2.90/32", "2001:db8::90/128"}  # not theirs
        assert holder.netlink.cache.dumps == 1
    finally:
        task.cancel()
        await holder.close()


async def test_link_down_up_and_deleted_link(node: Node) -> None:
    wants = [Want(IF("192.0.2.92/32"), node.dev, ("a",)),
             Want(IF("2001:db8::92/128"), node.dev, ("b",))]
    holder, heard, task = await holding(node, wants)
    extra = f"{node.prefix}x"
    try:
        # down: the kernel drops the IPv6 addresses that are not permanent
        ip("link", "set", node.dev, "down", netns=node.node)
        await settle(holder, node)
        assert cached(holder) == node.kernel()
        assert not any("2001:db8::92" in a for _, a in cached(holder))
        assert any(e.kind == "link" for e in heard)
        # up: the next reconcile adds it back, from the cache's view
        ip("link", "set", node.dev, "up", netns=node.node)
        await settle(holder, node)
        with entered(node.node):
            result = await holder.reconcile(wants)
        assert [str(w.interface) for w in result.plan.add] == ["2001:db8::92/128"]
        assert cached(holder) == node.kernel()
        # a link that goes away takes its addresses with it
        ip("link", "add", extra, "type", "veth", "peer", "name", f"{extra}p", netns=node.node)
        ip("addr", "add", "198.51.100.7/24", "dev", extra, netns=node.node)
        await settle(holder, node)
        assert any(a == "198.51.100.7/24" for _, a in cached(holder))
        ip("link", "del", extra, netns=node.node)
        await settle(holder, node)
        assert cached(holder) == node.kernel()
        assert holder.netlink.cache.dumps == 1
    finally:
        task.cancel()
        await holder.close()


async def test_restart_adopts_from_the_first_dump(node: Node) -> None:
    wants = [Want(IF("192.0.2.93/32"), node.dev, ("a",))]
    first, _heard, task = await holding(node, wants)
    task.cancel()
    await first.close()  # the agent goes away; its address stays within its lifetime
    with entered(node.node):
        second = AddressHolder(Netlink(), 30)
        assert await second.adopt() == 1
        result = await second.reconcile(wants)
    try:
        assert not result.plan.add and [str(w.interface) for w in result.plan.keep] == [
            "192.0.2.93/32"]
        assert second.netlink.cache.dumps == 1
    finally:
        await second.close()
