"""What the scheduler needs to know about a Service, and nothing more.

Annotations (the seed's first, then ours):
- `external-ip: auto`: give the Service one address from a pool, appended
  to spec.externalIPs (the seed's auto-allocation);
- `externalip.io/pool: NAME`: allocate from this pool only (also the way to
  use pools with autoAssign: false);
- `externalip.io/ips: IP[,IP]`: request these addresses, one per family
  (spec.loadBalancerIP, deprecated upstream, is honoured too);
- `externalip.io/sharing-key: KEY`: Services with the same key and
  non-overlapping ports may share one address.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

AUTO_ANNOTATION = "external-ip"
POOL_ANNOTATION = "externalip.io/pool"
IPS_ANNOTATION = "externalip.io/ips"
SHARING_ANNOTATION = "externalip.io/sharing-key"

Port = tuple[str, int]  # (protocol, port)


@dataclass(frozen=True)
class ServiceView:
    namespace: str
    name: str
    uid: str = ""
    created: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    load_balancer: bool = False  # type LoadBalancer and of a class we serve
    auto: bool = False
    external_ips: tuple[str, ...] = ()
    families: tuple[str, ...] = ("IPv4",)
    requested: tuple[str, ...] = ()
    pool: str = ""
    sharing_key: str = ""
    ports: frozenset[Port] = frozenset()
    ingress: tuple[str, ...] = ()
    local: bool = False  # externalTrafficPolicy: Local

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"
