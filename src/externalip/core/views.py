"""API JSON -> the core's views, pure. The only place the scheduler reads raw objects."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from externalip.core.addresses import IPAddress, parse_ip
from externalip.core.conditions import SERVICE, find
from externalip.core.services import (
    AUTO_ANNOTATION,
    IPS_ANNOTATION,
    POOL_ANNOTATION,
    SHARING_ANNOTATION,
    ServiceView,
)

EXCLUDE_LABEL = "node.kubernetes.io/exclude-from-external-load-balancers"


def serves_load_balancer(spec: Mapping[str, Any], lb_class: str, default_class: bool) -> bool:
    """Is this Service ours to give a LoadBalancer address: type LoadBalancer and
    of our loadBalancerClass, or of none while we are the default. The one
    place this is decided (scheduler, simple mode and status ask here)."""
    if spec.get("type") != "LoadBalancer":
        return False
    klass = spec.get("loadBalancerClass")
    return bool(klass == lb_class) if klass else default_class


def service_view(obj: Mapping[str, Any], lb_class: str, default_class: bool) -> ServiceView:
    meta, spec = obj["metadata"], obj.get("spec") or {}
    annotations = meta.get("annotations") or {}
    families = tuple(spec.get("ipFamilies") or ("IPv4",))
    if spec.get("ipFamilyPolicy") in (None, "SingleStack"):
        families = families[:1]
    requested = tuple(ip.strip() for ip in (annotations.get(IPS_ANNOTATION) or "").split(",")
                      if ip.strip())
    if not requested and spec.get("loadBalancerIP"):
        requested = (spec["loadBalancerIP"],)
    ingress = (obj.get("status") or {}).get("loadBalancer", {}).get("ingress") or []
    return ServiceView(
        namespace=meta["namespace"],
        name=meta["name"],
        uid=meta.get("uid", ""),
        created=meta.get("creationTimestamp", ""),
        labels=dict(meta.get("labels") or {}),
        load_balancer=serves_load_balancer(spec, lb_class, default_class),
        auto=annotations.get(AUTO_ANNOTATION) == "auto",
        external_ips=tuple(spec.get("externalIPs") or ()),
        families=families,
        requested=requested,
        pool=annotations.get(POOL_ANNOTATION, ""),
        sharing_key=annotations.get(SHARING_ANNOTATION, ""),
        ports=frozenset((p.get("protocol", "TCP"), int(p["port"]))
                        for p in spec.get("ports") or ()),
        ingress=tuple(i["ip"] for i in ingress if i.get("ip")),
        local=spec.get("externalTrafficPolicy") == "Local",
        condition=find((obj.get("status") or {}).get("conditions"), SERVICE),
    )


def node_usable(obj: Mapping[str, Any]) -> bool:
    """Ready, schedulable and not excluded from external load balancers."""
    if EXCLUDE_LABEL in (obj["metadata"].get("labels") or {}):
        return False
    if (obj.get("spec") or {}).get("unschedulable"):
        return False
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def endpoint_nodes(slices: Mapping[str, Mapping[str, Any]]) -> dict[str, frozenset[str]]:
    """namespace/service -> nodes with a ready endpoint (externalTrafficPolicy: Local)."""
    out: dict[str, set[str]] = {}
    for obj in slices.values():
        meta = obj["metadata"]
        service = (meta.get("labels") or {}).get("kubernetes.io/service-name")
        if not service:
            continue
        nodes = out.setdefault(f"{meta['namespace']}/{service}", set())
        for ep in obj.get("endpoints") or ():
            if (ep.get("conditions") or {}).get("ready", True) is not False and ep.get("nodeName"):
                nodes.add(ep["nodeName"])
    return {k: frozenset(v) for k, v in out.items()}


def node_addresses(nodes: Mapping[str, Mapping[str, Any]],
                   ipnodes: Mapping[str, Mapping[str, Any]]) -> dict[IPAddress, str]:
    """Every node's own address -> the node: Node status.addresses (what the
    kubelet reports) and the IpNode inventory (what the agent sees on the
    node's links). Neither may ever become a Service address."""
    out: dict[IPAddress, str] = {}
    reported = [(name, [a.get("address", "") for a in
                        (obj.get("status") or {}).get("addresses") or ()])
                for name, obj in nodes.items()]
    reported += [(name, list((obj.get("status") or {}).get("nodeAddresses") or ()))
                 for name, obj in ipnodes.items()]
    for name, texts in reported:
        for text in texts:
            try:
                out.setdefault(parse_ip(str(text)), name)
            except ValueError:
                continue  # Hostname and InternalDNS entries are names, not addresses
    return out
