"""The placement shortcuts give the answers of the plain rules they replace."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from externalip.core import placement

NODES = [f"n{i}" for i in range(12)]
node_sets = st.frozensets(st.sampled_from(NODES))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(node_sets, st.sampled_from(["", *NODES])), min_size=1, max_size=8),
       st.lists(st.sampled_from([f"c{i}" for i in range(6)]), min_size=1, max_size=6))
def test_remembered_standbys_equal_a_fresh_ranking(passes: list[tuple[frozenset[str], str]],
                                                   claims: list[str]) -> None:
    """Pass after pass, as nodes die and join and holders change, the memo
    answers exactly what ranking every node afresh answers."""
    memo = placement.Memo()
    for nodes, holder in passes:
        eligible = memo.intern(frozenset(nodes))
        for claim in claims:
            assert memo.standbys(claim, holder, eligible) == \
                placement.standbys(claim, holder, nodes)
        memo.end_pass()


def test_a_dead_standby_is_replaced_and_others_keep_their_order() -> None:
    memo = placement.Memo()
    everyone = memo.intern(frozenset(NODES))
    before = memo.standbys("c", "n0", everyone)
    memo.end_pass()
    without = memo.intern(frozenset(NODES) - {before[0]})
    after = memo.standbys("c", "n0", without)
    assert after[:2] == before[1:] and before[0] not in after and len(after) == 3


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(NODES), st.integers(0, 5)),
       st.lists(st.tuples(node_sets, st.sampled_from(NODES), st.sampled_from([1, -1])),
                max_size=20))
def test_loads_choose_the_least_loaded_node_by_name(start: dict[str, int],
                                                    steps: list[tuple[frozenset[str], str, int]]
                                                    ) -> None:
    """Heaps with stale entries still answer min((load, name)) after any
    sequence of placements and removals."""
    loads = placement.Loads(placement.FAIR)
    loads.load.update(start)
    for nodes, node, delta in steps:
        expected = min(nodes, key=lambda n: (loads.load[n], n)) if nodes else None
        assert loads.choose(nodes) == expected
        loads.add(node, delta)


def test_first_alive_takes_the_first_name() -> None:
    loads = placement.Loads(placement.FIRST_ALIVE)
    loads.add("a", 5)
    assert loads.choose(frozenset({"b", "a"})) == "a"
    assert loads.choose(frozenset()) is None
