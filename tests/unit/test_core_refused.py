"""A claim its node refused is placed on another eligible node (issue 12, item 14)."""

from __future__ import annotations

from dataclasses import replace

from externalip.core.desired import plan
from tests.unit.test_core_desired import converge, lb, world


def test_a_refused_claim_moves_to_another_eligible_node_unless_all_refused() -> None:
    w = converge(world([lb("a")]))
    (claim,) = w.claims.values()
    first = claim.spec.node_name
    p = plan(replace(w, refused={claim.spec.cidr: frozenset({first})}))
    (moved,) = p.update
    assert moved.spec.node_name not in ("", first)
    everyone = frozenset(w.nodes)
    assert plan(replace(w, refused={claim.spec.cidr: everyone})).writes == 0
