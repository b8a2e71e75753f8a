"""Which node holds a claim: the seed's node filters.

`fair` puts a claim on the eligible node holding the fewest claims (ties
broken by name, so every scheduler replica computes the same answer);
`first-alive` puts every claim on the first eligible node by name. A claim
whose node is still eligible never moves: a node that comes back does not
take claims back, so addresses do not flap.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

FAIR, FIRST_ALIVE = "fair", "first-alive"


def choose(eligible: Iterable[str], load: Mapping[str, int], policy: str) -> str | None:
    nodes = sorted(eligible)
    if not nodes:
        return None
    if policy == FIRST_ALIVE:
        return nodes[0]
    return min(nodes, key=lambda n: (load.get(n, 0), n))
