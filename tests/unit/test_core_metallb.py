"""Migration from MetalLB: the translation of its objects (core.metallb), its
Service annotations read as ours (core.views), and a Service keeping the
address MetalLB gave it (core.desired)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from externalip.core.desired import plan
from externalip.core.metallb import migrate, parse_entry
from externalip.core.model import Pool, PoolSpec
from externalip.core.pools import build
from externalip.core.services import invalid_fields
from externalip.core.views import service_view
from tests.unit.test_core_desired import POOL, converge, lb, world


def obj(kind: str, name: str, spec: dict[str, Any] | None = None,
        labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "metallb.io/v1beta1", "kind": kind,
            "metadata": {"name": name, "namespace": "metallb-system", "labels": labels or {}},
            "spec": spec or {}}


def pool(name: str, *addresses: str, **spec: Any) -> dict[str, Any]:
    return obj("IPAddressPool", name, {"addresses": list(addresses), **spec})


def test_ranges_keep_exactly_metallbs_addresses() -> None:
    result = migrate([pool("lan", "192.0.2.240/29", "192.0.2.250-192.0.2.252"),
                      obj("L2Advertisement", "l2")])
    (out,) = result.pools
    assert out["kind"] == "IpClaimPool" and out["metadata"]["name"] == "lan"
    # a MetalLB CIDR entry offers its network and broadcast addresses too
    assert out["spec"] == {"cidr": "192.0.2.240/28",
                           "ranges": [["192.0.2.240", "192.0.2.247"],
                                      ["192.0.2.250", "192.0.2.252"]],
                           "autoAssign": True, "avoidBuggyIPs": False}
    assert result.notes == []
    built = build(Pool("lan", PoolSpec(cidr=out["spec"]["cidr"], ranges=tuple(
        tuple(r) for r in out["spec"]["ranges"]))))  # type: ignore[arg-type]
    assert built.size() == 8 + 3


def test_flags_tenancy_and_node_selector_carry_over() -> None:
    selector = {"matchLabels": {"rack": "r1"}}
    result = migrate([
        pool("lan", "198.51.100.0/28", autoAssign=False, avoidBuggyIPs=True,
             serviceAllocation={"namespaces": ["web"],
                                "serviceSelectors": [{"matchLabels": {"tier": "front"}}]}),
        obj("L2Advertisement", "l2", {"ipAddressPools": ["lan"], "nodeSelectors": [selector]}),
    ])
    spec = result.pools[0]["spec"]
    assert spec["autoAssign"] is False and spec["avoidBuggyIPs"] is True
    assert spec["namespaces"] == ["web"]
    assert spec["serviceSelector"] == {"matchLabels": {"tier": "front"}}
    assert spec["nodeSelector"] == selector
    assert result.notes == []


def test_dual_stack_pool_becomes_two_pools_and_says_so() -> None:
    result = migrate([pool("lan", "192.0.2.10-192.0.2.20", "2001:db8::10-2001:db8::20"),
                      obj("L2Advertisement", "l2", {"ipAddressPoolSelectors": [
                          {"matchLabels": {"zone": "a"}}]})])
    assert [p["metadata"]["name"] for p in result.pools] == ["lan", "lan-v6"]
    assert result.pools[1]["spec"]["cidr"] == "2001:db8::/122"
    assert any("IPv6 part is pool lan-v6" in n for n in result.notes)
    # the pool has no label zone=a: no L2Advertisement announces it
    assert any("no L2Advertisement announces it" in n for n in result.notes)


def test_pool_selectors_of_advertisements_use_expressions_too() -> None:
    ad = obj("L2Advertisement", "l2", {
        "ipAddressPoolSelectors": [{"matchExpressions": [
            {"key": "zone", "operator": "In", "values": ["a"]}]}],
        "nodeSelectors": [{"matchLabels": {"zone": "a"}}]})
    result = migrate([obj("IPAddressPool", "in-a", {"addresses": ["192.0.2.1/32"]}, {"zone": "a"}),
                      obj("IPAddressPool", "in-b", {"addresses": ["192.0.2.2/32"]}, {"zone": "b"}),
                      ad])
    by_name = {p["metadata"]["name"]: p["spec"] for p in result.pools}
    assert by_name["in-a"]["nodeSelector"] == {"matchLabels": {"zone": "a"}}
    assert "nodeSelector" not in by_name["in-b"]
    assert result.notes == ["pool in-b: no L2Advertisement announces it; externalip announces "
                            "every address it hands out on L2 (ARP/NDP); for routed setups see "
                            "docs/ecmp-bgp.md"]


def test_what_cannot_be_carried_over_is_said() -> None:
    result = migrate([
        pool("far", "10.0.0.1/32", "203.0.113.1/32",
             serviceAllocation={"priority": 5, "namespaceSelectors": [{}],
                                "serviceSelectors": [{"matchLabels": {"a": "1"}},
                                                     {"matchLabels": {"b": "2"}}]}),
        obj("L2Advertisement", "a", {"nodeSelectors": [{"matchLabels": {"rack": "1"}}],
                                     "interfaces": ["eth1"]}),
        obj("L2Advertisement", "b", {"nodeSelectors": [{"matchLabels": {"rack": "2"}}]}),
        obj("BGPAdvertisement", "bgp"),
        pool("bad", "not-an-address"),
    ])
    text = "\n".join(result.notes)
    for expected in ("BGPAdvertisement bgp", "priority", "namespaceSelectors",
                     "2 serviceSelectors", "limits interfaces", "2 different node selectors",
                     "split into one IpClaimPool per entry", "'not-an-address' skipped"):
        assert expected in text, expected
    # 10.0.0.1 and 203.0.113.1 share only 0.0.0.0/0, a special network: one
    # pool per entry instead
    assert [p["metadata"]["name"] for p in result.pools] == ["far", "far-1"]
    assert "nodeSelector" not in result.pools[0]["spec"]


def test_other_objects_are_ignored_and_no_pool_is_said() -> None:
    result = migrate([{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}}])
    assert result.pools == [] and result.notes == ["no IPAddressPool found: nothing to migrate"]


def test_parse_entry() -> None:
    assert [str(a) for a in parse_entry("192.0.2.0/31")] == ["192.0.2.0", "192.0.2.1"]
    assert [str(a) for a in parse_entry(" 192.0.2.5 - 192.0.2.9 ")] == ["192.0.2.5", "192.0.2.9"]
    for bad in ("192.0.2.9-192.0.2.5", "192.0.2.1-2001:db8::1", "x"):
        try:
            parse_entry(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad} accepted")


def svc(annotations: dict[str, str]) -> dict[str, Any]:
    return {"metadata": {"namespace": "ns", "name": "a", "annotations": annotations},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}}


def test_metallb_annotations_are_read_as_ours() -> None:
    for prefix in ("metallb.io/", "metallb.universe.tf/"):
        view = service_view(svc({prefix + "loadBalancerIPs": "192.0.2.7",
                                 prefix + "address-pool": "lan",
                                 prefix + "allow-shared-ip": "k"}), "x", True)
        assert (view.requested, view.pool, view.sharing_key) == (("192.0.2.7",), "lan", "k")
    # ours wins over MetalLB's
    view = service_view(svc({"externalip.io/pool": "ours", "metallb.io/address-pool": "theirs"}),
                        "x", True)
    assert view.pool == "ours"


def test_a_bad_metallb_annotation_is_named_as_the_user_wrote_it() -> None:
    view = service_view(svc({"metallb.universe.tf/loadBalancerIPs": "192.0.2.300"}), "x", True)
    (problem,) = invalid_fields(view)
    assert problem.startswith("annotation metallb.universe.tf/loadBalancerIPs:")


def test_metallb_requested_address_gets_the_same_tenancy_checks() -> None:
    # POOL (192.0.2.200-209) serves only namespace "other": the request is refused

    guarded = build(Pool("lab", PoolSpec(cidr=POOL.pool.spec.cidr, ranges=POOL.pool.spec.ranges,
                                         namespaces=("other",))))
    view = service_view(svc({"metallb.io/loadBalancerIPs": "192.0.2.205"}), "x", True)
    p = plan(replace(world([view]), pools=[guarded]))
    assert p.create == [] and [e.reason for e in p.events] == ["PoolForbidden"]


def test_a_service_keeps_the_address_another_controller_gave_it() -> None:
    # MetalLB gave b 192.0.2.205; the first free address would be .200
    w = world([lb("a"), lb("b", ingress=("192.0.2.205",))])
    w = converge(w)
    assert w.services["ns/b"].ingress == ("192.0.2.205",)
    assert w.services["ns/a"].ingress == ("192.0.2.200",)


def test_a_kept_address_must_be_free_and_in_a_pool_the_service_may_use() -> None:
    # a holds .200; b's stale status names .200 too, c's an address outside
    # every pool: both get fresh addresses instead
    w = converge(world([lb("a")]))
    w = converge(replace(w, services={
        **w.services,
        "ns/b": lb("b", created="z1", ingress=("192.0.2.200",)),
        "ns/c": lb("c", created="z2", ingress=("203.0.113.9",))}))
    assert w.services["ns/a"].ingress == ("192.0.2.200",)
    assert w.services["ns/b"].ingress == ("192.0.2.201",)
    assert w.services["ns/c"].ingress == ("192.0.2.202",)
