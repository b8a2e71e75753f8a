from __future__ import annotations

import ipaddress
from collections import Counter
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from externalip.core import placement
from externalip.core.desired import Plan, World, plan
from externalip.core.model import Claim, ClaimStatus, Pool, PoolSpec
from externalip.core.pools import build
from externalip.core.selectors import LabelSelector
from externalip.core.services import ServiceView

POOL = build(Pool("lab", PoolSpec(cidr="192.0.2.0/24", ranges=(("192.0.2.200", "192.0.2.209"),))))
POOL6 = build(Pool("lab6", PoolSpec(cidr="2001:db8::/64",
                                    ranges=(("2001:db8::200", "2001:db8::2ff"),))))
NODES = {"n1": {}, "n2": {}, "n3": {}}


def lb(name: str, created: str = "", **kw: object) -> ServiceView:
    return ServiceView(namespace="ns", name=name, created=created or name, load_balancer=True,
                       ports=frozenset({("TCP", 80)}), **kw)  # type: ignore[arg-type]


def world(services: list[ServiceView], claims: dict[str, Claim] | None = None,
          nodes: dict[str, dict[str, str]] | None = None, **kw: object) -> World:
    return World(services={s.key: s for s in services}, claims=claims or {},
                 pools=[POOL, POOL6], nodes=NODES if nodes is None else nodes,
                 **kw)  # type: ignore[arg-type]


def apply(w: World, p: Plan) -> World:
    """What the API would look like after the plan's writes."""
    claims = dict(w.claims)
    for name in p.delete:
        claims.pop(name)
    for c in [*p.create, *p.update]:
        claims[c.name] = c
    services = dict(w.services)
    for key, ingress in p.ingress.items():
        services[key] = replace(services[key], ingress=ingress,
                                condition=p.conditions.get(key, services[key].condition))
    for key, ips in p.external_ips.items():
        services[key] = replace(services[key], external_ips=ips)
    return replace(w, claims=claims, services=services)


def converge(w: World) -> World:
    for _ in range(5):
        p = plan(w)
        if not p.writes:
            return w
        w = apply(w, p)
    raise AssertionError("no fixed point")


def test_lb_service_gets_its_claim_then_its_ingress_and_then_nothing() -> None:
    w = world([lb("a")])
    p = plan(w)
    assert [c.spec.cidr for c in p.create] == ["192.0.2.200/32"]
    assert p.create[0].name == "192-0-2-200-32" and p.create[0].spec.node_name == "n1"
    assert p.create[0].spec.services == ("ns/a",) and p.create[0].spec.pool == "lab"
    # the address is published only once the API server has accepted its claim
    assert p.ingress == {} and p.writes == 1
    w = apply(w, p)
    p = plan(w)
    assert p.ingress == {"ns/a": ("192.0.2.200",)} and p.writes == 1
    assert plan(apply(w, p)).writes == 0  # a restarted scheduler writes nothing


def test_external_ips_make_one_claim_each_shared_by_services() -> None:
    a = ServiceView("ns", "a", external_ips=("198.51.100.7", "198.51.100.8"))
    b = ServiceView("ns", "b", external_ips=("198.51.100.7",))
    p = plan(world([a, b]))
    by_name = {c.name: c for c in p.create}
    assert set(by_name) == {"198-51-100-7-32", "198-51-100-8-32"}
    assert by_name["198-51-100-7-32"].spec.services == ("ns/a", "ns/b")
    assert by_name["198-51-100-7-32"].spec.pool == ""


def test_unreferenced_claims_are_deleted_including_orphans() -> None:
    w = converge(world([lb("a"), lb("b")]))
    w = replace(w, services={k: v for k, v in w.services.items() if k != "ns/a"})
    p = plan(w)
    assert p.delete == ["192-0-2-200-32"]


def test_auto_annotation_appends_one_pool_ip_and_releases_it() -> None:
    svc = ServiceView("ns", "auto", auto=True, external_ips=("198.51.100.1",))
    w = converge(world([svc]))
    assert w.services["ns/auto"].external_ips == ("198.51.100.1", "192.0.2.200")
    w = replace(w, services={"ns/auto": replace(w.services["ns/auto"], auto=False)})
    w = converge(w)
    assert w.services["ns/auto"].external_ips == ("198.51.100.1",)
    assert [c.spec.cidr for c in w.claims.values()] == ["198.51.100.1/32"]


def test_dual_stack_gets_one_ip_per_family_and_requested_ips_are_honoured() -> None:
    w = converge(world([lb("d", families=("IPv4", "IPv6")),
                        lb("r", requested=("192.0.2.205", "2001:db8::2aa"),
                           families=("IPv4", "IPv6"))]))
    assert w.services["ns/d"].ingress == ("192.0.2.200", "2001:db8::200")
    assert w.services["ns/r"].ingress == ("192.0.2.205", "2001:db8::2aa")


def test_exhaustion_is_an_event_and_a_freed_ip_goes_to_the_waiting_service() -> None:
    services = [lb(f"s{i:02}") for i in range(11)]
    w = world(services)
    p = plan(w)
    assert len(p.create) == 10
    assert any(e.service == "ns/s10" and e.reason == "PoolExhausted" for e in p.events)
    w = apply(w, p)
    w = replace(w, services={k: v for k, v in w.services.items() if k != "ns/s03"})
    w = converge(w)
    assert w.services["ns/s10"].ingress == ("192.0.2.203",)


def test_sharing_key_shares_with_disjoint_ports_and_refuses_overlap() -> None:
    a = lb("a", sharing_key="k", requested=("192.0.2.201",))
    b = replace(lb("b", sharing_key="k", requested=("192.0.2.201",)),
                ports=frozenset({("TCP", 443)}))
    c = lb("c", requested=("192.0.2.201",))  # no key: conflict
    w = converge(world([a, b, c]))
    assert w.services["ns/a"].ingress == w.services["ns/b"].ingress == ("192.0.2.201",)
    assert w.services["ns/c"].ingress == ()
    assert any(e.service == "ns/c" and e.reason == "SharingConflict" for e in plan(w).events)


def test_pools_with_auto_assign_false_serve_only_services_that_name_them() -> None:
    manual = build(Pool("manual", PoolSpec(cidr="203.0.113.0/24", auto_assign=False)))
    w = replace(world([lb("named", pool="manual"), lb("plain")]), pools=[manual])
    w = converge(w)
    assert w.services["ns/named"].ingress == ("203.0.113.1",)
    assert w.services["ns/plain"].ingress == ()


def test_failover_moves_claims_of_a_dead_node_and_no_flap_back() -> None:
    w = converge(world([lb(f"s{i}") for i in range(6)]))
    assert Counter(c.spec.node_name for c in w.claims.values()) == {"n1": 2, "n2": 2, "n3": 2}
    w = converge(replace(w, nodes={"n1": {}, "n3": {}}))
    assert Counter(c.spec.node_name for c in w.claims.values()) == {"n1": 3, "n3": 3}
    back = converge(replace(w, nodes=NODES))
    # nothing moves back; the returning node only becomes a standby again
    assert {n: c.spec.node_name for n, c in back.claims.items()} == \
        {n: c.spec.node_name for n, c in w.claims.items()}
    assert any("n2" in c.spec.standbys for c in back.claims.values())


def test_every_claim_has_ordered_standbys_other_than_its_holder() -> None:
    w = converge(world([lb(f"s{i}") for i in range(6)]))
    for claim in w.claims.values():
        assert claim.spec.standbys and claim.spec.node_name not in claim.spec.standbys
        assert set(claim.spec.standbys) <= set(NODES)
    # spread: not every claim has the same first standby
    assert len({c.spec.standbys[0] for c in w.claims.values()}) > 1
    w1 = converge(replace(w, nodes={"n1": {}}))
    assert all(c.spec.standbys == () for c in w1.claims.values())


def test_a_takeover_by_a_standby_becomes_the_record() -> None:
    w = converge(world([lb("a")]))
    (claim,) = w.claims.values()
    taker = claim.spec.standbys[0]
    taken = replace(claim, status=ClaimStatus(ready=True, holder=taker, term=1))
    out = plan(replace(w, claims={claim.name: taken}))
    (update,) = out.update
    assert update.spec.node_name == taker and taker not in update.spec.standbys
    assert [e.reason for e in out.events] == ["ClaimTakenOver"]
    # a holder that is not eligible (its agent gone) is not recorded
    gone = replace(claim, status=ClaimStatus(ready=True, holder="elsewhere"))
    assert plan(replace(w, claims={claim.name: gone})).update == []


def test_first_alive_and_pool_node_selector_and_local_traffic_policy() -> None:
    w = converge(world([lb("a"), lb("b")], policy=placement.FIRST_ALIVE))
    assert {c.spec.node_name for c in w.claims.values()} == {"n1"}
    edge = build(Pool("edge", PoolSpec(cidr="203.0.113.0/24",
                                       node_selector=LabelSelector({"edge": "yes"}))))
    w2 = replace(world([lb("e")], nodes={"n1": {}, "n2": {"edge": "yes"}}), pools=[edge])
    assert [c.spec.node_name for c in converge(w2).claims.values()] == ["n2"]
    w3 = world([lb("l", local=True)], endpoints={"ns/l": frozenset({"n3"})})
    assert [c.spec.node_name for c in converge(w3).claims.values()] == ["n3"]
    w4 = world([lb("l", local=True)], endpoints={})
    p4 = plan(w4)
    assert p4.create[0].spec.node_name == ""
    assert any(e.reason == "NoEligibleNode" for e in p4.events)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.sampled_from(["", "k1", "k2"]),
                          st.sampled_from([80, 443])), min_size=1, max_size=14),
       st.sets(st.sampled_from(["n1", "n2", "n3", "n4"]), min_size=1))
def test_properties_no_ip_twice_inside_the_pools_fair_spread_fixed_point(
        shapes: list[tuple[bool, str, int]], nodes: set[str]) -> None:
    services = [replace(lb(f"s{i:02}", families=("IPv6",) if six else ("IPv4",),
                           sharing_key=key), ports=frozenset({("TCP", port)}))
                for i, (six, key, port) in enumerate(shapes)]
    w = converge(world(services, nodes={n: {} for n in nodes}))
    owners: dict[str, set[str]] = {}
    for svc in w.services.values():
        for ip in svc.ingress:
            address = ipaddress.ip_address(ip)
            assert POOL.contains(address) or POOL6.contains(address)
            owners.setdefault(ip, set()).add(svc.key)
    for keys in owners.values():
        if len(keys) > 1:  # shared only under one key, with disjoint ports
            svcs = [w.services[k] for k in keys]
            assert len({s.sharing_key for s in svcs}) == 1 and svcs[0].sharing_key
            ports = [p for s in svcs for p in s.ports]
            assert len(ports) == len(set(ports))
    load = Counter(c.spec.node_name for c in w.claims.values())
    assert set(load) <= nodes
    counts = [load.get(n, 0) for n in nodes]
    assert max(counts) - min(counts) <= 1
    assert plan(w).writes == 0


def test_a_claim_carries_the_ports_of_its_services_for_the_port_guard() -> None:
    web = lb("web", sharing_key="k")
    dns = replace(lb("dns", sharing_key="k"), ports=frozenset({("UDP", 53), ("TCP", 53)}))
    w = converge(world([web, dns]))
    (claim,) = [c for c in w.claims.values() if c.spec.cidr.startswith("192.0.2.")]
    assert claim.spec.ports == (("TCP", 53), ("TCP", 80), ("UDP", 53))
    assert claim.spec.to_dict()["ports"][0] == {"protocol": "TCP", "port": 53}
    assert type(claim.spec).from_dict(claim.spec.to_dict()) == claim.spec
    # a Service that leaves the address takes its ports with it
    p = plan(replace(w, services={web.key: w.services[web.key]}))
    assert [c.spec.ports for c in p.update] == [(("TCP", 80),)]
