"""`externalip drain NODE` and `externalip undrain NODE`: the maintenance signal.

`drain` labels the Node `externalip.io/drain=true`; the scheduler then moves
the node's addresses to other nodes, make-before-break (the node keeps each
address until its new holder has announced it, then stays silent for it for
the agent's --handover-delay and removes it: core.handover), gives the node
no new address and no standby role. With --wait it returns once the node
holds nothing, printing what is left as it goes. `undrain` removes the
label: the node may get new addresses again; nothing moves back to it.

A cordon alone moves nothing (core.views.node_usable says why), and
`kubectl drain` leaves the agent's DaemonSet pod alone: this label is the
one signal. docs/maintenance.md has the procedure.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from externalip.core.model import Claim, IpNode
from externalip.core.views import DRAIN_LABEL
from externalip.kube.api import CLAIMS, IPNODES, NODES, Api, ApiError, NotFoundError


def remaining(node: str, claims: list[Claim], ipnode: IpNode | None) -> tuple[int, int]:
    """(claims still assigned to the node, addresses its agent still reports holding)."""
    assigned = sum(1 for c in claims if c.spec.node_name == node)
    return assigned, len(ipnode.status.addresses) if ipnode else 0


async def _left(api: Api, node: str) -> tuple[int, int]:
    claims = [Claim.from_object(o) for o in (await api.list(CLAIMS)).get("items") or []]
    try:
        ipnode: IpNode | None = IpNode.from_object(await api.get(IPNODES, node))
    except NotFoundError:
        ipnode = None  # no agent there: nothing held
    return remaining(node, claims, ipnode)


async def _wait(api: Api, node: str, within: float) -> bool:
    deadline = time.monotonic() + within
    shown: tuple[int, int] | None = None
    while True:
        left = await _left(api, node)
        if left == (0, 0):
            print(f"node {node} holds no address")
            return True
        if left != shown:
            print(f"node {node}: {left[0]} claim(s) assigned, {left[1]} address(es) held")
            shown = left
        if time.monotonic() >= deadline:
            print(f"node {node} still holds addresses after {within:g}s: see "
                  "`externalip status` and the Services' Events (DrainBlocked: no other "
                  "node can take one)", file=sys.stderr)
            return False
        await asyncio.sleep(1.0)


async def run(opts: argparse.Namespace) -> int:
    draining = opts.command == "drain"
    api = Api.connect(opts.kubeconfig, retry_budget=10.0)
    try:
        try:
            await api.merge_patch(NODES, opts.node, {"metadata": {"labels": {
                DRAIN_LABEL: "true" if draining else None}}})
        except NotFoundError:
            print(f"externalip {opts.command}: no Node named {opts.node!r}", file=sys.stderr)
            return 1
        print(f"node {opts.node} " + ("draining: its addresses move to other nodes" if draining
                                      else "undrained: it may hold new addresses again"))
        if draining and opts.wait:
            return 0 if await _wait(api, opts.node, opts.timeout) else 1
        return 0
    except (ApiError, OSError) as exc:
        print(f"externalip {opts.command}: {exc}", file=sys.stderr)
        return 1
    finally:
        await api.close()


def main(opts: argparse.Namespace) -> int:
    return asyncio.run(run(opts))
