"""Services -> wants for simple mode."""

from __future__ import annotations

from typing import Any

from externalip.core.simple import SimpleOptions, wants_from_services


def svc(name: str, ips: list[str], type_: str = "ClusterIP", ingress: list[str] | None = None,
        cls: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": type_, "externalIPs": ips}
    if cls:
        spec["loadBalancerClass"] = cls
    return {"metadata": {"namespace": "ns", "name": name}, "spec": spec,
            "status": {"loadBalancer": {"ingress": [{"ip": i} for i in ingress or []]}}}


def test_shared_ip_held_once_for_all_owners_with_masks() -> None:
    wants, invalid = wants_from_services(
        [svc("a", ["192.0.2.1", "2001:db8::1"]), svc("b", ["192.0.2.1", "nope"])],
        SimpleOptions(link="eth0", mask=24, mask6=64))
    assert [(str(w.interface), w.owners) for w in wants] == [
        ("192.0.2.1/24", ("ns/a", "ns/b")), ("2001:db8::1/64", ("ns/a",))]
    assert "nope" in invalid["ns/b"]


def test_lb_ingress_only_when_asked_and_for_our_class() -> None:
    services = [svc("lb", [], "LoadBalancer", ["203.0.113.1"]),
                svc("theirs", [], "LoadBalancer", ["203.0.113.2"], cls="other.io/lb"),
                svc("ours", [], "LoadBalancer", ["203.0.113.3"], cls="externalip.io/lb")]
    off, _ = wants_from_services(services, SimpleOptions(link="lo"))
    assert off == []
    on, _ = wants_from_services(services, SimpleOptions(link="lo", lb_ingress=True,
                                                        lb_class="externalip.io/lb"))
    assert [str(w.interface.ip) for w in on] == ["203.0.113.1", "203.0.113.3"]
    strict, _ = wants_from_services(services, SimpleOptions(
        link="lo", lb_ingress=True, lb_class="externalip.io/lb", default_class=False))
    assert [str(w.interface.ip) for w in strict] == ["203.0.113.3"]
