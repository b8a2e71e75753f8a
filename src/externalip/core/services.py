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

from externalip.core.addresses import family, parse_ip
from externalip.core.conditions import Condition

AUTO_ANNOTATION = "external-ip"
POOL_ANNOTATION = "externalip.io/pool"
IPS_ANNOTATION = "externalip.io/ips"
SHARING_ANNOTATION = "externalip.io/sharing-key"

Port = tuple[str, int]  # (protocol, port)

# The IpClaim CRD's limits on what a Service's annotations end up in
# (spec.sharingKey, spec.pool): longer values would make every claim write fail.
SHARING_KEY_MAX = 253
POOL_NAME_MAX = 253


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
    condition: Condition | None = None  # ours in status.conditions (core.conditions.SERVICE)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def invalid_fields(svc: ServiceView) -> list[str]:
    """What is wrong with the Service's annotations, for its Warning Event.

    Checked before anything is allocated: a value the API server would refuse
    in a claim must stop the Service here, with a clear message, rather than
    as a write that fails forever.
    """
    problems = []
    if len(svc.sharing_key) > SHARING_KEY_MAX:
        problems.append(f"annotation {SHARING_ANNOTATION} is {len(svc.sharing_key)} characters "
                        f"long; at most {SHARING_KEY_MAX} are allowed")
    if len(svc.pool) > POOL_NAME_MAX:
        problems.append(f"annotation {POOL_ANNOTATION} is {len(svc.pool)} characters long; "
                        f"at most {POOL_NAME_MAX} are allowed")
    families: list[str] = []
    for text in svc.requested:
        try:
            families.append(family(parse_ip(text)))
        except ValueError as exc:
            problems.append(f"annotation {IPS_ANNOTATION}: {exc}")
    if len(families) != len(set(families)):
        problems.append(f"annotation {IPS_ANNOTATION} names more than one address of a family")
    return problems
