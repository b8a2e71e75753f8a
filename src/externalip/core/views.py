"""API JSON -> the core's views, pure. The only place the scheduler reads raw objects."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from externalip.core.addresses import IPAddress, parse_ip
from externalip.core.conditions import SERVICE, find
from externalip.core.services import (
    AUTO_ANNOTATION,
    IPS_ANNOTATION,
    METALLB_ALIASES,
    METALLB_PREFIXES,
    POOL_ANNOTATION,
    SHARING_ANNOTATION,
    ServiceView,
    annotation,
)

EXCLUDE_LABEL = "node.kubernetes.io/exclude-from-external-load-balancers"
# The annotations service_view reads (ours and their MetalLB aliases): a
# cache may drop every other one.
SERVICE_ANNOTATIONS = frozenset({AUTO_ANNOTATION, IPS_ANNOTATION, POOL_ANNOTATION,
                                 SHARING_ANNOTATION} | {
    prefix + alias for prefix in METALLB_PREFIXES for alias in METALLB_ALIASES.values()})
# Ours: "true" asks the scheduler to move the node's addresses away,
# make-before-break (`externalip drain NODE` sets it; docs/maintenance.md).
DRAIN_LABEL = "externalip.io/drain"


def serves_load_balancer(spec: Mapping[str, Any], lb_class: str, default_class: bool) -> bool:
    """Is this Service ours to give a LoadBalancer address: type LoadBalancer and
    of our loadBalancerClass, or of none while we are the default. The one
    place this is decided (scheduler, simple mode and status ask here)."""
    if spec.get("type") != "LoadBalancer":
        return False
    klass = spec.get("loadBalancerClass")
    return bool(klass == lb_class) if klass else default_class


def service_ports(spec: Mapping[str, Any]) -> frozenset[tuple[str, int]]:
    """(protocol, port) of a Service's spec."""
    return frozenset((p.get("protocol", "TCP"), int(p["port"])) for p in spec.get("ports") or ())


def service_view(obj: Mapping[str, Any], lb_class: str, default_class: bool) -> ServiceView:
    meta, spec = obj["metadata"], obj.get("spec") or {}
    annotations = meta.get("annotations") or {}
    families = tuple(spec.get("ipFamilies") or ("IPv4",))
    if spec.get("ipFamilyPolicy") in (None, "SingleStack"):
        families = families[:1]
    # ours, else MetalLB's alias (core.services): key actually used, value
    found = {ours: annotation(annotations, ours)
             for ours in (IPS_ANNOTATION, POOL_ANNOTATION, SHARING_ANNOTATION)}
    requested = tuple(ip.strip() for ip in found[IPS_ANNOTATION][1].split(",") if ip.strip())
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
        pool=found[POOL_ANNOTATION][1],
        sharing_key=found[SHARING_ANNOTATION][1],
        ports=service_ports(spec),
        ingress=tuple(i["ip"] for i in ingress if i.get("ip")),
        local=spec.get("externalTrafficPolicy") == "Local",
        aliases={ours: key for ours, (key, _) in found.items() if key and key != ours},
        condition=find((obj.get("status") or {}).get("conditions"), SERVICE),
    )


def node_usable(obj: Mapping[str, Any]) -> bool:
    """Ready and not excluded from external load balancers.

    A cordon (spec.unschedulable) does not count: kubeadm upgrades and
    `kubectl drain` cordon nodes that keep running, and moving addresses on a
    cordon is what made MetalLB revert its PR 2470 after outages (its issue
    2715). The explicit signal is our drain label (`node_draining`).
    """
    if EXCLUDE_LABEL in (obj["metadata"].get("labels") or {}):
        return False
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def node_draining(obj: Mapping[str, Any]) -> bool:
    """The node carries our drain label: its addresses move away, make-before-break."""
    return (obj["metadata"].get("labels") or {}).get(DRAIN_LABEL) == "true"


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
    reported = [(name, [a.get("address", "") for a in
                        (obj.get("status") or {}).get("addresses") or ()])
                for name, obj in nodes.items()]
    reported += [(name, list((obj.get("status") or {}).get("nodeAddresses") or ()))
                 for name, obj in ipnodes.items()]
    return _by_address(reported)


def held_addresses(ipnodes: Mapping[str, Mapping[str, Any]]) -> dict[IPAddress, str]:
    """Every address an agent reports holding for a claim (IpNode
    `status.addresses`) -> the node. A node cut off from the API keeps an
    address whose claim was deleted meanwhile, and its inventory still says so."""
    return _by_address([(name, list((obj.get("status") or {}).get("addresses") or ()))
                        for name, obj in sorted(ipnodes.items())])


def _by_address(reported: list[tuple[str, list[Any]]]) -> dict[IPAddress, str]:
    out: dict[IPAddress, str] = {}
    for name, texts in reported:
        for text in texts:
            try:
                out.setdefault(parse_ip(str(text)), name)
            except ValueError:
                continue  # Hostname and InternalDNS entries are names, not addresses
    return out
