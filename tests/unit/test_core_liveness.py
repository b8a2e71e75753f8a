"""The failover rules: quorum of live observers, the majority fence, ordered takeover."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from externalip.core.liveness import Evidence, Peer, Timing, is_down, may_hold, takes_over

T = Timing()
FRESH, STALE = 0.05, 2.0


def view(me: str, heard: dict[str, tuple[float, set[str]]], members: set[str] | None = None,
         **kw: object) -> Evidence:
    peers = {n: Peer(age=age, hears=frozenset(h)) for n, (age, h) in heard.items()}
    return Evidence(me=me, peers=peers, members=frozenset(members or set(heard) | {me}),
                    **kw)  # type: ignore[arg-type]


def test_a_dead_node_is_down_when_the_live_observers_agree() -> None:
    ev = view("a", {"b": (FRESH, {"a", "c"}), "c": (STALE, {"a", "b"}), "d": (FRESH, {"a", "b"})})
    assert is_down(ev, T, "c")
    assert not is_down(ev, T, "b")


def test_one_lossy_observer_moves_nothing() -> None:
    # we lost c's datagrams, but b and d still hear it: c is not down
    ev = view("a", {"b": (FRESH, {"a", "c", "d"}), "c": (STALE, {"a", "b", "d"}),
                    "d": (FRESH, {"a", "b", "c"})})
    assert not is_down(ev, T, "c")


def test_split_views_need_a_strict_majority() -> None:
    # observers a (us), b, d: b hears c, d does not -> 2 of 3 silent: down
    ev = view("a", {"b": (FRESH, {"c"}), "c": (STALE, set()), "d": (FRESH, set())})
    assert is_down(ev, T, "c")
    # observers a, b, d, e: two hear c, two do not -> no majority: not down
    ev = view("a", {"b": (FRESH, {"c"}), "c": (STALE, set()), "d": (FRESH, set()),
                    "e": (FRESH, {"c"})})
    assert not is_down(ev, T, "c")


def test_a_starved_agent_neither_accuses_nor_votes() -> None:
    ev = view("a", {"b": (FRESH, set()), "c": (STALE, set())}, starved=True)
    assert not is_down(ev, T, "c")
    # a starved peer's word does not count: b alone (starved) cannot outvote us
    peers = {"b": Peer(FRESH, frozenset(), starved=True), "c": Peer(STALE),
             "d": Peer(FRESH, frozenset({"c"}))}
    ev2 = Evidence(me="a", peers=peers, members=frozenset("abcd"))
    assert not is_down(ev2, T, "c")  # us silent, d hears c: 1 of 2, no majority


def test_a_peer_that_said_it_runs_late_gets_more_time() -> None:
    peers = {"b": Peer(FRESH, frozenset({"a"})), "c": Peer(1.0, starved=True)}
    ev = Evidence(me="a", peers=peers, members=frozenset("abc"))
    assert not is_down(ev, T, "c")
    longer = Evidence(me="a", peers={**peers, "c": Peer(1.6, starved=True)},
                      members=frozenset("abc"))
    assert is_down(longer, T, "c")


def test_nothing_is_judged_before_the_startup_listen_period() -> None:
    ev = view("a", {"b": (FRESH, set()), "c": (STALE, set())}, listening_for=0.1)
    assert not is_down(ev, T, "c")


def test_a_member_never_heard_since_we_started_is_starting_not_down() -> None:
    """Agents of a cluster that boots (or regains power) come up seconds apart:
    the first must not take over the claims of nodes whose agents are still
    starting (they would then find their addresses answered by it)."""
    members = {"a", "b", "c"}
    starting = view("a", {"b": (FRESH, {"a"})}, members=members, listening_for=3.0)
    assert not is_down(starting, T, "c")
    assert not takes_over(starting, T, "c", ("a", "b"))
    later = view("a", {"b": (FRESH, {"a"})}, members=members,
                 listening_for=T.restart_grace + 1)
    assert is_down(later, T, "c")
    heard_then_silent = view("a", {"b": (FRESH, {"a"}), "c": (STALE, set())}, members=members,
                             listening_for=3.0)
    assert is_down(heard_then_silent, T, "c")


def test_two_nodes_fail_over_and_a_down_link_yields() -> None:
    ev = view("a", {"b": (STALE, set())})
    assert is_down(ev, T, "b") and may_hold(ev, T)
    assert takes_over(ev, T, "b", ("a",))
    cut = view("a", {"b": (STALE, set())}, link_up=False)
    assert not may_hold(cut, T) and not takes_over(cut, T, "b", ("a",))


def test_two_of_five_dying_together_still_fail_over() -> None:
    five = set("abcde")
    ev = view("a", {"b": (FRESH, {"a", "c"}), "c": (FRESH, {"a", "b"}),
                    "d": (STALE, set()), "e": (STALE, set())}, members=five)
    assert is_down(ev, T, "d") and is_down(ev, T, "e")
    assert may_hold(ev, T)
    assert takes_over(ev, T, "d", ("e", "a", "b"))  # e is dead too: a is next
    assert not takes_over(ev, T, "d", ("b", "a"))  # b is alive and first


def test_a_node_cut_off_from_the_majority_goes_silent_and_is_taken_over() -> None:
    five = set("abcde")
    # a hears only b; c, d, e are silent to it
    minority = view("a", {"b": (FRESH, {"a"})}, members=five)
    assert not may_hold(minority, T)
    assert not takes_over(minority, T, "c", ("a",))
    # on the majority side, a is down and c's standby takes over
    majority = view("c", {"d": (FRESH, {"c", "e"}), "e": (FRESH, {"c", "d"}),
                          "a": (STALE, set()), "b": (STALE, set())}, members=five)
    assert is_down(majority, T, "a") and may_hold(majority, T)
    assert takes_over(majority, T, "a", ("c", "d"))


def test_an_even_split_keeps_both_halves_silent() -> None:
    four = set("abcd")
    half = view("a", {"b": (FRESH, {"a"})}, members=four)
    assert not may_hold(half, T)


def test_the_holder_needs_fresh_confirmation() -> None:
    ev = view("a", {"b": (0.29, {"a"}), "c": (0.29, {"a"})})
    assert may_hold(ev, T)
    late = view("a", {"b": (0.4, {"a"}), "c": (0.4, {"a"})})  # heard, but not within confirm
    assert not may_hold(late, T)


@given(st.dictionaries(st.sampled_from("bcdefg"),
                       st.tuples(st.floats(0, 3), st.sets(st.sampled_from("abcdefg"))),
                       min_size=1),
       st.permutations("bcdefg"))
def test_at_most_one_standby_takes_a_claim_given_the_same_evidence(
        heard: dict[str, tuple[float, set[str]]], order: list[str]) -> None:
    """Every standby applies the same rule; with one shared view of who is
    down, no two of them take the same claim."""
    holder, standbys = order[0], tuple(order[1:4])
    takers = []
    for me in standbys:
        mine = {n: v for n, v in heard.items() if n != me}
        ev = view(me, {**mine, **{s: (FRESH, set(heard)) for s in standbys if s != me}},
                  members=set("abcdefg"))
        if takes_over(ev, T, holder, standbys):
            takers.append(me)
    assert len(takers) <= 1


def test_a_restarting_peer_is_not_down_within_the_grace() -> None:
    peers = {"b": Peer(FRESH, frozenset({"a"})), "c": Peer(2.0, restarting=True)}
    ev = Evidence(me="a", peers=peers, members=frozenset("abc"))
    assert not is_down(ev, T, "c")
    late = Evidence(me="a", peers={**peers, "c": Peer(31.0, restarting=True)},
                    members=frozenset("abc"))
    assert is_down(late, T, "c")


def test_a_peer_failing_authentication_is_never_judged_down() -> None:
    ev = view("a", {"b": (FRESH, set()), "c": (STALE, set())}, unverified=frozenset({"c"}))
    assert not is_down(ev, T, "c")


def test_a_node_with_the_wrong_key_keeps_answering_and_so_do_the_others() -> None:
    # c was given another key: everything it hears fails authentication
    odd = view("c", {}, members=set("abc"), unverified=frozenset({"a", "b"}))
    assert may_hold(odd, T)
    # a and b hear each other; c's beats fail: c is neither down nor a missing vote
    ev = view("a", {"b": (FRESH, {"a"})}, members=set("abc"), unverified=frozenset({"c"}))
    assert may_hold(ev, T) and not is_down(ev, T, "c")
