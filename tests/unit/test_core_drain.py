"""Drain, make-before-break: the scheduler's moves (core.desired), the old
holder's hand-over steps (core.handover) and what it holds (core.holding)."""

from __future__ import annotations

import ipaddress
from dataclasses import replace

import pytest

from externalip.core.claims import StatusLedger
from externalip.core.desired import plan
from externalip.core.handover import Handover
from externalip.core.holding import Have, Want
from externalip.core.holding import plan as hold_plan
from externalip.core.model import Claim, ClaimSpec, ClaimStatus, role_label
from externalip.core.views import node_draining, node_usable
from tests.unit.test_core_desired import NODES, apply, converge, lb, world


def test_a_draining_node_hands_its_claims_over_and_gets_nothing_new() -> None:
    w = converge(world([lb(f"s{i}") for i in range(6)]))
    on_n1 = {n for n, c in w.claims.items() if c.spec.node_name == "n1"}
    assert on_n1
    p = plan(replace(w, draining=frozenset({"n1"})))
    moved = {c.name: c for c in p.update}
    for name in on_n1:
        spec = moved[name].spec
        assert spec.node_name in ("n2", "n3") and spec.handover_from == "n1"
        assert "n1" not in spec.standbys
        # the draining node keeps watching the claim: its role label says handover
        assert moved[name].to_object()["metadata"]["labels"][role_label("n1")] == "handover"
    assert all("n1" not in c.spec.standbys for c in moved.values())
    assert {e.reason for e in p.events} == {"ClaimMoved"}
    assert all("draining" in e.message for e in p.events)
    drained = converge(replace(w, draining=frozenset({"n1"}),
                               services={**w.services, "ns/new": lb("new")}))
    assert all(c.spec.node_name != "n1" for c in drained.claims.values())
    # the old holder's own status (holder n1) is no takeover to record back
    stale = {n: replace(c, status=ClaimStatus(ready=True, holder="n1")) if n in on_n1 else c
             for n, c in drained.claims.items()}
    assert plan(replace(drained, claims=stale)).update == []
    # undrain: nothing moves back, the node only becomes a standby again
    back = converge(replace(drained, draining=frozenset()))
    assert {n: c.spec.node_name for n, c in back.claims.items()} == \
        {n: c.spec.node_name for n, c in drained.claims.items()}
    assert any("n1" in c.spec.standbys for c in back.claims.values())


def test_a_claim_no_other_node_can_take_stays_on_the_draining_node() -> None:
    w = converge(world([lb("a")], nodes={"n1": {}}))
    p = plan(replace(w, draining=frozenset({"n1"})))
    assert p.update == [] and [e.reason for e in p.events] == ["DrainBlocked"]
    # but a new claim is not placed on a draining node
    w2 = replace(w, draining=frozenset({"n1"}), services={**w.services, "ns/b": lb("b")})
    created = apply(w2, plan(w2))
    assert [c.spec.node_name for n, c in created.claims.items() if n not in w.claims] == [""]


def test_a_dead_node_is_no_hand_over() -> None:
    w = converge(world([lb("a")]))
    (c,) = w.claims.values()
    p = plan(replace(w, nodes={n: v for n, v in NODES.items() if n != c.spec.node_name},
                     draining=frozenset()))
    (moved,) = p.update
    assert moved.spec.handover_from == ""


def test_cordon_alone_moves_nothing() -> None:
    node = {"metadata": {"name": "n1", "labels": {}}, "spec": {"unschedulable": True},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    assert node_usable(node) and not node_draining(node)
    node["metadata"]["labels"] = {"externalip.io/drain": "true"}  # type: ignore[index]
    assert node_draining(node)


SPEC = ClaimSpec(cidr="192.0.2.5/32", node_name="n2", handover_from="n1", standbys=("n3",))


def test_the_old_holder_holds_until_the_new_one_is_ready_then_is_quiet_then_lets_go() -> None:
    h = Handover(delay=5.0)
    mine = Claim("a", SPEC, ClaimStatus(ready=True, holder="n1"))
    other = Claim("b", replace(SPEC, cidr="192.0.2.6/32", handover_from=""))
    step = h.step([mine, other], "n1", now=100.0)
    assert [c.name for c in step.hold] == ["a"] and step.quiet == () and step.next_due is None
    ready = replace(mine, status=ClaimStatus(ready=True, holder="n2"))
    step = h.step([ready], "n1", now=101.0)
    assert step.hold == () and [c.name for c in step.quiet] == ["a"] and step.next_due == 5.0
    step = h.step([ready], "n1", now=105.5)
    assert [c.name for c in step.quiet] == ["a"] and step.next_due == 0.5
    assert h.step([ready], "n1", now=106.0) == type(step)()  # let go
    # the new holder, and every other node, has no part in it
    assert h.step([ready], "n2", now=106.0) == type(step)()


def test_hearing_the_new_holder_announce_makes_the_old_one_quiet_before_its_status() -> None:
    h = Handover(delay=5.0)
    mine = Claim("a", SPEC, ClaimStatus(ready=True, holder="n1"))
    assert [c.name for c in h.step([mine], "n1", now=100.0).hold] == ["a"]
    h.announced("a")
    for now in (100.5, 101.0):  # quiet from then on, status or not
        assert [c.name for c in h.step([mine], "n1", now=now).quiet] == ["a"]
    ready = replace(mine, status=ClaimStatus(ready=True, holder="n2"))
    assert h.step([ready], "n1", now=105.4).next_due == pytest.approx(0.1)
    assert h.step([ready], "n1", now=105.5).quiet == ()
    h.announced("gone")  # a claim no longer handed over is forgotten
    assert h.step([], "n1", now=106.0) == type(h.step([], "n1", now=106.0))()


def test_the_old_holder_writes_no_status_for_a_claim_it_hands_over() -> None:
    c = Claim("a", SPEC, ClaimStatus(ready=True, holder="n1", since="t0"))
    assert StatusLedger().due([c], "n1", held={"a"}, problems={}, now="t1") == {}
    assert StatusLedger().due([c], "n1", held=set(), problems={}, now="t1") == {}
    # the new holder writes itself as holder: a move, not a takeover (no term, no takenFrom)
    assert StatusLedger().due([c], "n2", held={"a"}, problems={}, now="t1") == {
        "a": ClaimStatus(ready=True, holder="n2", since="t1")}


def test_a_quiet_want_is_kept_never_added() -> None:
    iface = ipaddress.ip_interface("192.0.2.5/32")
    quiet = Want(iface, "eth0", ("a",), handover=True, quiet=True)
    kept = hold_plan([quiet], [Have(iface, "eth0", ours=True)], {"eth0"})
    assert kept.keep == (quiet,) and kept.add == () and kept.remove == ()
    gone = hold_plan([quiet], [], {"eth0"})
    assert gone.add == () and gone.keep == () and gone.refused == {}
