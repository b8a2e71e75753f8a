"""Claims -> wants and statuses for the claims-mode agent."""

from __future__ import annotations

from dataclasses import replace

from externalip.core.claims import (
    StatusLedger,
    node_status,
    status_conditions,
    to_hold,
    wants_from_claims,
)
from externalip.core.conditions import merge
from externalip.core.liveness import Evidence, Peer, Timing
from externalip.core.model import Claim, ClaimSpec, ClaimStatus


def claim(name: str, cidr: str, node: str = "n1", link: str = "", *,
          status: ClaimStatus | None = None, rv: str = "1") -> Claim:
    return Claim(name, ClaimSpec(cidr=cidr, node_name=node, link=link),
                 status or ClaimStatus(), resource_version=rv)


def test_only_own_claims_with_link_override() -> None:
    wants, invalid = wants_from_claims(
        [claim("a", "192.0.2.5/32"), claim("b", "192.0.2.6/32", node="n2"),
         claim("c", "2001:db8::1/128", "n1", "eth1"), claim("d", "bogus")], "n1", "eth0")
    assert [(w.owners, w.link, str(w.interface)) for w in wants] == [
        (("a",), "eth0", "192.0.2.5/32"), (("c",), "eth1", "2001:db8::1/128")]
    assert "bogus" in invalid["d"]


def test_status_ready_keeps_since_on_adoption() -> None:
    old = ClaimStatus(ready=True, holder="n1", since="2026-01-01T00:00:00Z")
    c = claim("a", "192.0.2.5/32", status=old)
    c = replace(c, conditions=tuple(merge((), status_conditions(c, old), "then")))
    assert StatusLedger().due([c], "n1", held={"a"}, problems={}, now="later") == {}
    # written before conditions existed: the same status once more, with them
    bare = replace(c, conditions=())
    assert StatusLedger().due([bare], "n1", held={"a"}, problems={}, now="later") == {"a": old}
    moved = claim("a", "192.0.2.5/32", status=ClaimStatus(ready=True, holder="n2", since="x"))
    assert StatusLedger().due([moved], "n1", held={"a"}, problems={}, now="T") == {
        "a": ClaimStatus(ready=True, holder="n1", since="T")}


def test_problem_reported_and_not_repeated_before_watch_catches_up() -> None:
    ledger = StatusLedger()
    c = claim("a", "192.0.2.5/32", rv="7")
    out = ledger.due([c], "n1", held=set(), problems={"a": "taken"}, now="T")
    assert out == {"a": ClaimStatus(ready=False, message="taken")}
    ledger.wrote(c, out["a"])
    assert ledger.due([c], "n1", held=set(), problems={"a": "taken"}, now="T") == {}
    newer = claim("a", "192.0.2.5/32", rv="8")  # someone else changed it since: write again
    assert ledger.due([newer], "n1", held=set(), problems={"a": "taken"}, now="T") == out
    ledger.keep([])  # the claim is gone: what we wrote about it is forgotten
    assert ledger.due([c], "n1", held=set(), problems={"a": "taken"}, now="T") == out


def test_held_written_once_while_its_echo_is_on_the_way() -> None:
    """Issue 16: one status patch per new claim. A pass a second later, before
    the watch delivered our write, must not write the claim again with a new
    `since` (about one claim in ten was written twice under load)."""
    ledger = StatusLedger()
    c = claim("a", "192.0.2.5/32", rv="7")
    out = ledger.due([c], "n1", held={"a"}, problems={}, now="T1")
    assert out == {"a": ClaimStatus(ready=True, holder="n1", since="T1")}
    ledger.wrote(c, out["a"])
    assert ledger.due([c], "n1", held={"a"}, problems={}, now="T2") == {}
    # a takeover's term is raised once, not once per pass
    spec = ClaimSpec(cidr="192.0.2.6/32", node_name="n2")
    taken = Claim("b", spec, ClaimStatus(ready=True, holder="n2", since="T0", term=3),
                  resource_version="9")
    (status,) = ledger.due([taken], "n1", held={"b"}, problems={}, now="T1").values()
    assert status.term == 4 and status.taken_from == "n2"
    ledger.wrote(taken, status)
    assert ledger.due([taken], "n1", held={"b"}, problems={}, now="T2") == {}
    # the echo arrives: nothing more to say
    echoed = replace(c, status=out["a"], resource_version="8",
                     conditions=tuple(merge((), status_conditions(c, out["a"]), "T1")))
    assert ledger.due([echoed], "n1", held={"a"}, problems={}, now="T3") == {}
    # released later: judged against our write, the release is due
    assert ledger.due([c], "n1", held=set(), problems={}, now="T3") == {
        "a": ClaimStatus(ready=False)}


def test_node_status_lists_ips_sorted() -> None:
    wants, _ = wants_from_claims([claim("b", "192.0.2.9/32"), claim("a", "192.0.2.10/32")],
                                 "n1", "eth0")
    s = node_status("eth0", wants, "0.1.0")
    assert s.addresses == ("192.0.2.10", "192.0.2.9") and s.link == "eth0"


def _evidence(me: str, alive: dict[str, set[str]], dead: tuple[str, ...] = ()) -> Evidence:
    peers = {n: Peer(age=0.05, hears=frozenset(h)) for n, h in alive.items()}
    peers.update({n: Peer(age=5.0) for n in dead})
    return Evidence(me=me, peers=peers, members=frozenset({me, *alive, *dead}))


def test_who_holds_after_takeovers_and_moves() -> None:
    t = Timing()
    base = ClaimSpec(cidr="192.0.2.5/32", node_name="n1", standbys=("n2", "n3"))
    # n1 is down: its first standby n2 takes over, n3 does not
    ev2 = _evidence("n2", {"n3": {"n2"}}, dead=("n1",))
    held, taken = to_hold([Claim("a", base)], "n2", ev2, t, {})
    assert [c.name for c in held] == ["a"] and taken == {"a": "n1"}
    ev3 = _evidence("n3", {"n2": {"n3"}}, dead=("n1",))
    assert to_hold([Claim("a", base)], "n3", ev3, t, {})[0] == []
    # n1 comes back before the scheduler recorded n2's takeover: n2 keeps it
    status = ClaimStatus(ready=True, holder="n2", term=1, taken_from="n1")
    ev1 = _evidence("n1", {"n2": {"n1"}, "n3": {"n1"}})
    assert to_hold([Claim("a", base, status)], "n1", ev1, t, {})[0] == []
    # a move by the scheduler is not a takeover: the new node holds at once
    moved = replace(base, node_name="n3", standbys=("n2",))
    stale = ClaimStatus(ready=True, holder="n1")
    assert [c.name for c in to_hold([Claim("a", moved, stale)], "n3", ev3, t, {})[0]] == ["a"]
    # the scheduler reassigned a taken-over claim elsewhere: the taker lets go
    assert to_hold([Claim("a", moved, status)], "n2", ev2, t, {"a": "n1"}) == ([], {})


def test_a_takeover_raises_the_term_and_names_where_it_came_from() -> None:
    spec = ClaimSpec(cidr="192.0.2.5/32", node_name="n1")
    old = ClaimStatus(ready=True, holder="n1", since="t0", term=2)
    (status,) = StatusLedger().due([Claim("a", spec, old)], "n2", held={"a"}, problems={},
                                   now="t1").values()
    assert status == ClaimStatus(ready=True, holder="n2", since="t1", term=3, taken_from="n1")
    # the old holder, back, says nothing over the new holder's status
    taken = Claim("a", spec, status)
    assert StatusLedger().due([taken], "n1", held=set(), problems={}, now="t2") == {}
