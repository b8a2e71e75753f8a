"""Which Services the scheduler serves: spec.loadBalancerClass and --default-class."""

from __future__ import annotations

from typing import Any

from externalip.core.views import service_view

OURS = "externalip.io/lb"


def svc(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"namespace": "ns", "name": "s"},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80}], **spec}}


def test_our_class_is_served_whatever_default_class_says() -> None:
    for default in (True, False):
        assert service_view(svc(loadBalancerClass=OURS), OURS, default).load_balancer


def test_another_class_is_never_served() -> None:
    for default in (True, False):
        assert not service_view(svc(loadBalancerClass="other.io/lb"), OURS,
                                default).load_balancer


def test_class_less_services_only_with_default_class() -> None:
    assert service_view(svc(), OURS, True).load_balancer
    assert not service_view(svc(), OURS, False).load_balancer


def test_requested_ips_annotation_wins_over_load_balancer_ip_and_single_stack_keeps_one() -> None:
    obj = svc(loadBalancerIP="192.0.2.1", ipFamilies=["IPv4", "IPv6"])
    obj["metadata"]["annotations"] = {"externalip.io/ips": " 192.0.2.9 , 2001:db8::9 "}
    view = service_view(obj, OURS, True)
    assert view.requested == ("192.0.2.9", "2001:db8::9")
    assert view.families == ("IPv4",)  # no ipFamilyPolicy means SingleStack
    assert service_view(svc(loadBalancerIP="192.0.2.1"), OURS, True).requested == ("192.0.2.1",)
