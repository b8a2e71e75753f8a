"""Conditions for `kubectl wait`: written only along writes that happen anyway."""

from __future__ import annotations

from dataclasses import replace

from externalip.core import conditions
from externalip.core.claims import StatusLedger, status_conditions
from externalip.core.conditions import SERVICE, Condition, find, merge
from externalip.core.desired import plan
from externalip.core.model import Claim, ClaimSpec, ClaimStatus
from tests.unit.test_core_desired import apply, lb, world


def test_merge_keeps_other_controllers_conditions_and_unchanged_transition_times() -> None:
    existing = [{"type": "other.io/Thing", "status": "True", "reason": "X", "message": "",
                 "lastTransitionTime": "2020-01-01T00:00:00Z"},
                {"type": SERVICE, "status": "True", "reason": "IPAllocated", "message": "old",
                 "lastTransitionTime": "2021-01-01T00:00:00Z"}]
    same = merge(existing, [Condition.of(SERVICE, True, "IPAllocated", "new")], "NOW")
    assert same[0] == existing[0]
    assert same[1]["message"] == "new" and same[1]["lastTransitionTime"] == "2021-01-01T00:00:00Z"
    flipped = merge(existing, [Condition.of(SERVICE, False, "PoolExhausted", "full")], "NOW")
    assert flipped[1]["lastTransitionTime"] == "NOW" and flipped[1]["status"] == "False"
    assert find(flipped, SERVICE) == Condition(SERVICE, "False", "PoolExhausted", "full")


def test_the_service_condition_rides_on_the_ingress_write_and_costs_no_request() -> None:
    w = world([lb("a")])
    first = plan(w)
    assert first.create and not first.ingress and not first.conditions  # nothing to say yet
    w = apply(w, first)
    second = plan(w)
    cond = second.conditions["ns/a"]
    assert set(second.ingress) == set(second.conditions) == {"ns/a"}
    assert (cond.status, cond.reason) == ("True", "IPAllocated")
    assert second.ingress["ns/a"][0] in cond.message
    w = apply(w, second)
    assert plan(w).writes == 0 and not plan(w).conditions


def test_a_service_that_cannot_get_an_address_says_why_once() -> None:
    w = world([lb("a", pool="nosuchpool")])
    p = plan(w)
    cond = p.conditions["ns/a"]
    assert (cond.status, cond.reason) == ("False", "NoPool")
    assert p.ingress == {"ns/a": ()}  # the status write that carries it
    w = apply(w, p)
    assert not plan(w).conditions  # said: not again on every pass


def test_a_withdrawn_address_says_pending_in_the_write_that_withdraws_it() -> None:
    w = world([lb("a", ingress=("192.0.2.250",),
                  condition=Condition.of(SERVICE, True, "IPAllocated", "x"))])
    p = plan(w)
    assert p.ingress["ns/a"] == ()
    assert p.conditions["ns/a"] == conditions.pending(())


def claim(ready: bool, holder: str = "", message: str = "", taken: str = "") -> Claim:
    return Claim("c", ClaimSpec(cidr="192.0.2.5/32", node_name="n1"),
                 ClaimStatus(ready=ready, holder=holder, message=message, taken_from=taken))


def test_claim_conditions_follow_the_agents_status() -> None:
    scheduled, ready = status_conditions(claim(True, "n1"), claim(True, "n1").status)
    assert (scheduled.status, scheduled.reason, ready.status, ready.reason) == \
        ("True", "Assigned", "True", "Held")
    taken = claim(True, "n2", taken="n1")
    scheduled, ready = status_conditions(taken, taken.status)
    assert scheduled.reason == "TakenOver" and "n1" in scheduled.message
    refused = claim(False, message="interface eth9 not found")
    assert status_conditions(refused, refused.status)[1] == Condition(
        "Ready", "False", "NotHeld", "interface eth9 not found")


def test_a_claim_written_before_conditions_existed_gets_them_once() -> None:
    held = claim(True, "n1")
    ledger = StatusLedger()
    due = ledger.due([held], "n1", held={"c"}, problems={}, now="T")
    assert set(due) == {"c"}  # the same status, but no conditions yet
    conds = merge((), status_conditions(held, due["c"]), "T")
    with_conds = replace(held, status=due["c"], conditions=tuple(conds))
    assert ledger.due([with_conds], "n1", held={"c"}, problems={}, now="T2") == {}


def test_an_address_no_node_may_hold_is_not_called_assigned_and_its_claim_says_why() -> None:
    w = world([lb("a")], nodes={})
    w = apply(w, plan(w))  # the claim exists, placed nowhere
    p = plan(w)
    (name,) = w.claims
    assert p.conditions["ns/a"].reason == "NoEligibleNode"
    assert p.conditions["ns/a"].status == "False"
    said = conditions.unscheduled(w.claims[name], "")
    assert said is not None and (said.type, said.status) == ("Scheduled", "False")
    w = apply(w, p)
    w = replace(w, claims={name: replace(w.claims[name], conditions=(said.to_dict("T"),))})
    assert plan(w).writes == 0 and conditions.unscheduled(w.claims[name], "") is None  # once
    placed = plan(replace(w, nodes={"n1": {}}))  # a node comes: placed, then assigned
    assert placed.update and conditions.unscheduled(w.claims[name], "n1") is None
    w = apply(replace(w, nodes={"n1": {}}), placed)
    assert plan(w).conditions["ns/a"].status == "True"


def test_a_refused_address_turns_the_service_false_until_a_node_holds_it() -> None:
    w = world([lb("a")])
    w = apply(w, plan(w))
    w = apply(w, plan(w))  # assigned: True
    (name,) = w.claims
    node = w.claims[name].spec.node_name
    refused = replace(w.claims[name], status=ClaimStatus(ready=False,
                                                          message="interface eth9 not found"))
    p = plan(replace(w, claims={name: refused}))
    cond = p.conditions["ns/a"]
    assert (cond.status, cond.reason) == ("False", "AddressRefused")
    assert node in cond.message and "eth9" in cond.message
    held = replace(refused, status=ClaimStatus(ready=True, holder=node))
    w = apply(replace(w, claims={name: held}), p)
    assert plan(w).conditions["ns/a"].status == "True"  # held again: said, once
