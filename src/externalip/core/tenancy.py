"""Who may use an address: pool tenancy, special and node addresses. Pure.

A pool's `namespaces` and `serviceSelector` hold on every path an address can
reach a Service by: free choice, a named pool, a requested address, sharing
and spec.externalIPs inside a pool. The rule for sharing follows: a Service
may join a shared address only if it could have been given it itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from externalip.core.addresses import IPAddress
from externalip.core.pools import AddressPool
from externalip.core.services import ServiceView
from externalip.core.special import special


def permits(pool: AddressPool, svc: ServiceView) -> bool:
    """The pool's tenancy: its `namespaces` and `serviceSelector` admit the Service."""
    spec = pool.pool.spec
    if spec.namespaces and svc.namespace not in spec.namespaces:
        return False
    return spec.service_selector is None or spec.service_selector.matches(svc.labels)


def refusal(ip: IPAddress, svc: ServiceView, pools: Sequence[AddressPool],
            node_addresses: Mapping[IPAddress, str]) -> tuple[str, str]:
    """(Event reason, message) when the Service may not use `ip` at all, else ("", "").

    Special addresses (core.special) and any node's own address are refused
    to everyone; an address inside pools that all exclude the Service is
    refused to it.
    """
    why = special(ip)
    if why:
        return "SpecialAddress", f"{why}; it is never put on a node"
    node = node_addresses.get(ip)
    if node is not None:
        return "NodeAddress", f"{ip} is an address of node {node}, not a Service address"
    containing = [p for p in pools if p.contains(ip)]
    if containing and not any(permits(p, svc) for p in containing):
        names = ", ".join(p.name for p in containing)
        return "PoolForbidden", (f"{ip} belongs to pool {names}, which does not serve "
                                 f"namespace {svc.namespace} or this Service's labels")
    return "", ""
