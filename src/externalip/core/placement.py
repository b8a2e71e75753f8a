"""Which node holds a claim: the seed's node filters.

`fair` puts a claim on the eligible node holding the fewest claims (ties
broken by name, so every scheduler replica computes the same answer);
`first-alive` puts every claim on the first eligible node by name. A claim
whose node is still eligible never moves: a node that comes back does not
take claims back, so addresses do not flap.
"""

from __future__ import annotations

import hashlib
import heapq
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING

from externalip.core.addresses import IPAddress
from externalip.core.model import ClaimSpec
from externalip.core.selectors import LabelSelector

if TYPE_CHECKING:
    from externalip.core.desired import World

FAIR, FIRST_ALIVE = "fair", "first-alive"
STANDBYS = 3  # how many nodes stand by for each claim


class Loads:
    """The claims per node during one pass, and `choose` over it in O(log n).

    `choose` gives the same answer as min((load, name)) over the eligible
    nodes, without scanning 1,000 nodes for each of 10,000 new claims: one
    heap per distinct eligible set, its stale entries skipped when popped.
    """

    def __init__(self, policy: str) -> None:
        self.policy = policy
        self.load: dict[str, int] = defaultdict(int)
        self._heaps: dict[frozenset[str], list[tuple[int, str]]] = {}

    def add(self, node: str, delta: int) -> None:
        self.load[node] += delta
        for nodes, heap in self._heaps.items():
            if node in nodes:
                heapq.heappush(heap, (self.load[node], node))

    def choose(self, eligible: frozenset[str]) -> str | None:
        if not eligible:
            return None
        if self.policy == FIRST_ALIVE:
            return min(eligible)
        heap = self._heaps.get(eligible)
        if heap is None:
            heap = self._heaps[eligible] = [(self.load[n], n) for n in eligible]
            heapq.heapify(heap)
        while heap[0][0] != self.load[heap[0][1]]:
            heapq.heappop(heap)  # stale: that node's load changed since
        return heap[0][1]


def standbys(claim: str, holder: str, eligible: Iterable[str], count: int = STANDBYS
             ) -> tuple[str, ...]:
    """The nodes that take `claim` over, in order, when its holder dies.

    Rendezvous hashing: each node's rank for a claim is a hash of both, so a
    dead node's claims spread evenly over the survivors, and adding or
    removing a node reorders only the claims whose standbys it is.
    """
    others = sorted((n for n in eligible if n != holder), key=lambda n: _rank(claim, n))
    return tuple(others[:count])


def _rank(claim: str, node: str) -> bytes:
    return hashlib.blake2b(f"{claim}/{node}".encode(), digest_size=8).digest()


def eligible(world: World, spec: ClaimSpec,
             known: dict[tuple[object, ...], tuple[frozenset[str], frozenset[str]]]
             ) -> tuple[frozenset[str], frozenset[str]]:
    """The nodes that may hold the claim (the pool's nodeSelector, nodes with an
    endpoint for Local Services, and not those that refused it lately), and
    of those the ones new claims may go to (not draining).

    Most claims share one answer (same pool, no Local Service, no refusal):
    it is computed once per pass (`known`) and interned in the world's memo,
    so that the standbys' memo recognises it on the next pass.
    """
    local = tuple(s for s in spec.services if s in world.services and world.services[s].local)
    refused = world.refused.get(spec.cidr, frozenset())
    key = (spec.pool, local, refused)
    if key not in known:
        nodes = _eligible(world, spec.pool, local, refused)
        known[key] = (world.memo.intern(nodes), world.memo.intern(nodes - world.draining))
    return known[key]


def _eligible(world: World, pool_name: str, local: tuple[str, ...],
              refused: frozenset[str]) -> frozenset[str]:
    nodes = set(world.nodes)
    pool = next((p for p in world.pools if p.name == pool_name), None)
    selector: LabelSelector | None = pool.pool.spec.node_selector if pool else None
    if selector is not None:
        nodes = {n for n in nodes if selector.matches(world.nodes[n])}
    for service in local:  # externalTrafficPolicy: Local
        nodes &= world.endpoints.get(service, frozenset())
    # nodes that refused it, unless every node did (then it stays where it is)
    return frozenset(nodes - refused or nodes)


def place(world: World, spec: ClaimSpec, ip: IPAddress, eligible: frozenset[str],
          load: Loads, *, new: bool) -> tuple[ClaimSpec, list[tuple[str, str, str]]]:
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
    node = load.choose(eligible)
    if previous and load.load.get(previous):
        load.add(previous, -1)
    draining = previous in world.draining
    notes: list[tuple[str, str, str]] = []
    if node is not None:
        load.add(node, 1)
        if previous:  # first placements are visible on the claim; moves are news
            why = ", draining: it hands the address over" if draining else ""
            notes.append(("Normal", "ClaimMoved",
                          f"{ip} moved to node {node} (was {previous}{why})"))
    elif new or previous:  # say it once, when it becomes unplaceable
        notes.append(("Warning", "NoEligibleNode", f"no live eligible node can hold {ip}"))
    return replace(spec, node_name=node or "", handover_from=previous if draining else ""), notes


class Memo:
    """`standbys` remembered from one pass to the next (pure: same inputs, same
    answer). Ranking 1,000 nodes for each of 10,000 claims on every pass was
    nearly all of a pass. Eligible sets are interned, so an unchanged set is
    the same object pass after pass and a hit is an identity check. When the
    set changes (a node dies or joins), a claim is ranked again only against
    the nodes that changed: rendezvous order lets a standby list change only
    if one of its nodes left or a new node outranks its last.
    """

    MAX_SETS = 256  # distinct eligible sets kept (pools with node selectors, Local)

    def __init__(self) -> None:
        self._sets: dict[frozenset[str], frozenset[str]] = {}
        self._ranked: dict[str, tuple[str, frozenset[str], tuple[str, ...]]] = {}
        self._used: dict[str, tuple[str, frozenset[str], tuple[str, ...]]] = {}
        self._diffs: dict[tuple[int, int], tuple[frozenset[str], frozenset[str]]] = {}

    def intern(self, nodes: frozenset[str]) -> frozenset[str]:
        if len(self._sets) >= self.MAX_SETS and nodes not in self._sets:
            self._sets.clear()
        return self._sets.setdefault(nodes, nodes)

    def standbys(self, claim: str, holder: str, eligible: frozenset[str]) -> tuple[str, ...]:
        hit = self._ranked.get(claim)
        if hit is None or hit[0] != holder:
            hit = (holder, eligible, standbys(claim, holder, eligible))
        elif hit[1] is not eligible:
            hit = (holder, eligible, self._rerank(claim, holder, hit[1], hit[2], eligible))
        self._used[claim] = hit
        return hit[2]

    def _rerank(self, claim: str, holder: str, before: frozenset[str], ranked: tuple[str, ...],
                eligible: frozenset[str]) -> tuple[str, ...]:
        key = (id(before), id(eligible))
        if key not in self._diffs:
            self._diffs[key] = (before - eligible, eligible - before)
        gone, new = self._diffs[key]
        if len(ranked) < STANDBYS or any(n in gone for n in ranked):
            return standbys(claim, holder, eligible)
        last = _rank(claim, ranked[-1])
        if any(_rank(claim, n) < last for n in new if n != holder):
            return standbys(claim, holder, eligible)
        return ranked

    def end_pass(self) -> None:
        """Forget the claims this pass did not rank (deleted ones)."""
        self._ranked, self._used, self._diffs = self._used, {}, {}
