"""Which node holds a claim: the seed's node filters.

`fair` puts a claim on the eligible node holding the fewest claims (ties
broken by name, so every scheduler replica computes the same answer);
`first-alive` puts every claim on the first eligible node by name. A claim
whose node is still eligible never moves: a node that comes back does not
take claims back, so addresses do not flap.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

from externalip.core.addresses import IPAddress
from externalip.core.model import ClaimSpec
from externalip.core.selectors import LabelSelector

if TYPE_CHECKING:
    from externalip.core.desired import World

FAIR, FIRST_ALIVE = "fair", "first-alive"
STANDBYS = 3  # how many nodes stand by for each claim


def choose(eligible: Iterable[str], load: Mapping[str, int], policy: str) -> str | None:
    nodes = sorted(eligible)
    if not nodes:
        return None
    if policy == FIRST_ALIVE:
        return nodes[0]
    return min(nodes, key=lambda n: (load.get(n, 0), n))


def standbys(claim: str, holder: str, eligible: Iterable[str], count: int = STANDBYS
             ) -> tuple[str, ...]:
    """The nodes that take `claim` over, in order, when its holder dies.

    Rendezvous hashing: each node's rank for a claim is a hash of both, so a
    dead node's claims spread evenly over the survivors, and adding or
    removing a node reorders only the claims whose standbys it is.
    """
    def rank(node: str) -> bytes:
        return hashlib.blake2b(f"{claim}/{node}".encode(), digest_size=8).digest()
    others = sorted((n for n in eligible if n != holder), key=rank)
    return tuple(others[:count])


def eligible(world: World, spec: ClaimSpec) -> set[str]:
    """The nodes that may hold the claim: the pool's nodeSelector, nodes with an
    endpoint for Local Services, and not those that refused it lately."""
    nodes = set(world.nodes)
    pool = next((p for p in world.pools if p.name == spec.pool), None)
    selector: LabelSelector | None = pool.pool.spec.node_selector if pool else None
    if selector is not None:
        nodes = {n for n in nodes if selector.matches(world.nodes[n])}
    local = [world.endpoints.get(s, frozenset()) for s in spec.services
             if s in world.services and world.services[s].local]
    for with_endpoint in local:  # externalTrafficPolicy: Local
        nodes &= with_endpoint
    # nodes that refused it, unless every node did (then it stays where it is)
    return (nodes - world.refused.get(spec.cidr, frozenset())) or nodes


def place(world: World, spec: ClaimSpec, ip: IPAddress, eligible: set[str],
          load: dict[str, int], *, new: bool) -> tuple[ClaimSpec, list[tuple[str, str, str]]]:
    """Put a claim whose node may not hold it (any more) on an eligible node;
    the spec, and (type, reason, message) of the Events for its Services.

    A claim leaving a draining node names it in handoverFrom: it keeps the
    address until the new holder has it (make-before-break). One that no other
    node can take stays (`eligible` is then just its node), with a Warning.
    """
    previous = spec.node_name
    if previous in eligible:
        return spec, [("Warning", "DrainBlocked", f"{ip} stays on draining node {previous}: "
                       "no other eligible node can hold it")] if previous in world.draining \
            else []
    node = choose(eligible, load, world.policy)
    if previous and load.get(previous):
        load[previous] -= 1
    draining = previous in world.draining
    notes: list[tuple[str, str, str]] = []
    if node is not None:
        load[node] += 1
        if previous:  # first placements are visible on the claim; moves are news
            why = ", draining: it hands the address over" if draining else ""
            notes.append(("Normal", "ClaimMoved",
                          f"{ip} moved to node {node} (was {previous}{why})"))
    elif new or previous:  # say it once, when it becomes unplaceable
        notes.append(("Warning", "NoEligibleNode", f"no live eligible node can hold {ip}"))
    return replace(spec, node_name=node or "", handover_from=previous if draining else ""), notes
