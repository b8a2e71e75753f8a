"""Pool tenancy, node addresses and input validation in the plan (issue 12, items 2, 3, 5)."""

from __future__ import annotations

import ipaddress
from dataclasses import replace

from externalip.core.desired import World, plan
from externalip.core.model import Claim, ClaimSpec, Pool, PoolSpec
from externalip.core.notices import SEVERAL, fold_warnings
from externalip.core.pools import build
from externalip.core.selectors import LabelSelector
from externalip.core.services import ServiceView
from tests.unit.test_core_desired import NODES, POOL, converge

PROD = build(Pool("prod-only", PoolSpec(cidr="198.51.100.0/24",
                                        ranges=(("198.51.100.10", "198.51.100.19"),),
                                        auto_assign=False, namespaces=("prod",))))
GOLD = build(Pool("gold", PoolSpec(cidr="203.0.113.0/24",
                                   ranges=(("203.0.113.10", "203.0.113.19"),),
                                   service_selector=LabelSelector({"tier": "gold"}))))


def svc(ns: str, name: str, **kw: object) -> ServiceView:
    kw.setdefault("created", name)
    return ServiceView(namespace=ns, name=name, load_balancer=True,
                       ports=frozenset({("TCP", 80)}), **kw)  # type: ignore[arg-type]


def world(*services: ServiceView, **kw: object) -> World:
    return World(services={s.key: s for s in services}, claims={}, pools=[POOL, PROD, GOLD],
                 nodes=NODES, **kw)  # type: ignore[arg-type]


def reasons(w: World, key: str) -> set[str]:
    return {e.reason for e in plan(w).events if e.service == key and e.type == "Warning"}


def test_a_named_pool_serves_only_its_namespaces() -> None:
    inside = svc("prod", "web", pool="prod-only")
    outside = svc("dev", "web", pool="prod-only")
    w = converge(world(inside, outside))
    assert w.services["prod/web"].ingress == ("198.51.100.10",)
    assert w.services["dev/web"].ingress == ()
    assert "NoPool" in reasons(w, "dev/web")


def test_a_requested_address_obeys_namespaces_and_service_selector() -> None:
    dev = svc("dev", "web", requested=("198.51.100.15",))
    plain = svc("dev", "plain", requested=("203.0.113.15",))
    gold = svc("dev", "gold", requested=("203.0.113.16",), labels={"tier": "gold"})
    w = converge(world(dev, plain, gold))
    assert w.services["dev/web"].ingress == ()
    assert w.services["dev/plain"].ingress == ()
    assert w.services["dev/gold"].ingress == ("203.0.113.16",)
    assert reasons(w, "dev/web") == {"PoolForbidden"}
    assert reasons(w, "dev/plain") == {"PoolForbidden"}
    assert set(w.claims) == {"203-0-113-16-32"}


def test_a_service_selector_holds_for_free_choice() -> None:
    gold = svc("a", "gold", labels={"tier": "gold"}, pool="gold")
    plain = svc("a", "plain", pool="gold")
    w = converge(world(gold, plain))
    assert w.services["a/gold"].ingress == ("203.0.113.10",)
    assert w.services["a/plain"].ingress == ()


def test_sharing_joins_only_what_the_service_could_have_been_given() -> None:
    prod = svc("prod", "web", pool="prod-only", sharing_key="k")
    intruder = replace(svc("dev", "web", sharing_key="k", created="z"),
                       ports=frozenset({("TCP", 443)}))
    friend = replace(svc("prod", "api", pool="prod-only", sharing_key="k", created="y"),
                     ports=frozenset({("TCP", 8080)}))
    w = converge(world(prod, intruder, friend))
    assert w.services["prod/web"].ingress == ("198.51.100.10",)
    assert w.services["prod/api"].ingress == ("198.51.100.10",)
    # the intruder got its own address from a pool it may use, not prod's
    assert w.services["dev/web"].ingress == ("192.0.2.200",)
    assert w.claims["198-51-100-10-32"].spec.services == ("prod/api", "prod/web")


def test_external_ips_inside_a_forbidding_pool_are_refused() -> None:
    ext = ServiceView("dev", "ext", external_ips=("198.51.100.11",))
    assert reasons(world(ext), "dev/ext") == {"PoolForbidden"}
    assert not plan(world(ext)).create


def test_node_addresses_are_never_allocated_nor_placed() -> None:
    nodes = {ipaddress.ip_address("192.0.2.200"): "n1", ipaddress.ip_address("192.0.2.11"): "n2"}
    stealer = ServiceView("ns", "steal", external_ips=("192.0.2.11",))
    requester = svc("ns", "req", requested=("192.0.2.200",))
    fresh = svc("ns", "fresh")
    w = converge(world(stealer, requester, fresh, node_addresses=nodes))
    assert "192-0-2-11-32" not in w.claims and "192-0-2-200-32" not in w.claims
    assert w.services["ns/fresh"].ingress == ("192.0.2.201",)  # .200 is n1's, skipped
    assert reasons(w, "ns/steal") == {"NodeAddress"}
    assert reasons(w, "ns/req") == {"NodeAddress"}
    # a claim made earlier for a node's address goes away
    old = Claim("192-0-2-11-32", ClaimSpec(cidr="192.0.2.11/32", node_name="n1",
                                           services=("ns/steal",)))
    p = plan(replace(world(stealer, node_addresses=nodes), claims={old.name: old}))
    assert p.delete == ["192-0-2-11-32"]


def test_an_address_a_node_still_holds_without_claim_is_not_handed_out() -> None:
    """The known defect of issue 12: a node cut off from the API keeps an
    address whose claim was deleted; nobody else gets it until it lets go."""
    held = {ipaddress.ip_address("192.0.2.200"): "n1", ipaddress.ip_address("192.0.2.201"): "n2"}
    fresh = svc("ns", "fresh")
    ext = ServiceView("ns", "ext", external_ips=("192.0.2.200",))
    requester = svc("ns", "req", requested=("192.0.2.201",))
    w = converge(world(fresh, ext, requester, held=held))
    assert w.services["ns/fresh"].ingress == ("192.0.2.202",)  # .200 and .201 skipped
    assert set(w.claims) == {"192-0-2-202-32"}
    assert w.services["ns/req"].ingress == ()
    assert reasons(w, "ns/ext") == {"AddressStillHeld"}
    assert reasons(w, "ns/req") == {"AddressStillHeld"}
    # the same claim is no conflict: the holder reports what its claim says
    mine = converge(world(fresh, held={ipaddress.ip_address("192.0.2.200"): "n1"}))
    assert not plan(replace(mine, held={ipaddress.ip_address("192.0.2.202"): "n3"})).writes
    # once released, the address is given out again
    free = converge(replace(w, held={}))
    assert "192-0-2-200-32" in free.claims and free.services["ns/req"].ingress == ("192.0.2.201",)


def test_invalid_annotations_are_refused_before_anything_is_allocated() -> None:
    zoned = svc("ns", "zoned", requested=("2001:db8::200%eth0",), families=("IPv6",))
    long_key = svc("ns", "longkey", sharing_key="k" * 254)
    two = svc("ns", "two", requested=("192.0.2.201", "192.0.2.202"))
    w = world(zoned, long_key, two)
    p = plan(w)
    assert not p.create and set(p.ingress.values()) == {()}  # no address...
    # ...and the reason in each Service's condition, in that one status write
    assert {(k, c.status, c.reason) for k, c in p.conditions.items()} == {
        (k, "False", "InvalidService") for k in ("ns/zoned", "ns/longkey", "ns/two")}
    warnings = [e for e in p.events if e.type == "Warning"]
    assert {e.service for e in warnings} == {"ns/zoned", "ns/longkey", "ns/two"}
    assert all(e.reason == "InvalidService" for e in warnings)
    assert "zone" in next(e.message for e in warnings if e.service == "ns/zoned")
    assert "254 characters" in next(e.message for e in warnings if e.service == "ns/longkey")
    # a Service that turns bad loses its published address with its claim
    good = converge(world(svc("ns", "longkey")))
    assert good.services["ns/longkey"].ingress
    bad = replace(good, services={"ns/longkey": replace(good.services["ns/longkey"],
                                                        sharing_key="k" * 254)})
    after = converge(bad)
    assert after.services["ns/longkey"].ingress == () and not after.claims


def test_no_ingress_is_published_without_an_accepted_claim() -> None:
    w = world(svc("ns", "a"))
    first = plan(w)
    assert first.create and not first.ingress
    # the create was refused: the next pass plans it again, still publishes nothing
    again = plan(w)
    assert again.create == first.create and not again.ingress


def test_one_warning_per_service_and_pass() -> None:
    bad = ServiceView("dev", "bad", external_ips=("198.51.100.11", "255.255.255.255",
                                                  "240.0.0.1"))
    events = fold_warnings(plan(world(bad)).events)
    (warning,) = [e for e in events if e.service == "dev/bad"]
    assert warning.reason == SEVERAL
    assert "198.51.100.11" in warning.message and "240.0.0.1" in warning.message
    assert "255.255.255.255" in warning.message
