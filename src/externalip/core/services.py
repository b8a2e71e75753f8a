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

MetalLB's Service annotations (`metallb.io/` and the older
`metallb.universe.tf/`) mean the same and are honoured when ours is absent,
so Services migrated from MetalLB keep working unchanged
(docs/migrate-from-metallb.md): `loadBalancerIPs` is `ips`, `address-pool`
is `pool`, `allow-shared-ip` is `sharing-key`. They flow into the same
ServiceView fields, so the same validation and tenancy checks hold.
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

METALLB_PREFIXES = ("metallb.io/", "metallb.universe.tf/")
# ours -> MetalLB's name for the same annotation (without its prefix)
METALLB_ALIASES = {IPS_ANNOTATION: "loadBalancerIPs", POOL_ANNOTATION: "address-pool",
                   SHARING_ANNOTATION: "allow-shared-ip"}

Port = tuple[str, int]  # (protocol, port)

# The IpClaim CRD's limits on what a Service's annotations end up in
# (spec.sharingKey, spec.pool): longer values would make every claim write fail.
SHARING_KEY_MAX = 253
POOL_NAME_MAX = 253


def annotation(annotations: Mapping[str, str], ours: str) -> tuple[str, str]:
    """(key, value) of one of our annotations, or of its MetalLB alias when
    ours is absent; ("", "") when none is set. The key names the annotation
    the user wrote, for the messages that quote it."""
    if ours in annotations:
        return ours, annotations[ours]
    alias = METALLB_ALIASES.get(ours)
    for prefix in METALLB_PREFIXES if alias else ():
        key = prefix + str(alias)
        if key in annotations:
            return key, annotations[key]
    return "", ""


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
    # our annotation -> the key the user wrote it under, when that was a
    # MetalLB alias (so messages quote what the user wrote)
    aliases: Mapping[str, str] = field(default_factory=dict)
    condition: Condition | None = None  # ours in status.conditions (core.conditions.SERVICE)
    # namespace/name, computed once: a pass reads it several times per Service
    key: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", f"{self.namespace}/{self.name}")


def invalid_fields(svc: ServiceView) -> list[str]:
    """What is wrong with the Service's annotations, for its Warning Event.

    Checked before anything is allocated: a value the API server would refuse
    in a claim must stop the Service here, with a clear message, rather than
    as a write that fails forever.
    """
    def name(ours: str) -> str:
        return svc.aliases.get(ours, ours)

    problems = []
    if len(svc.sharing_key) > SHARING_KEY_MAX:
        problems.append(f"annotation {name(SHARING_ANNOTATION)} is {len(svc.sharing_key)} "
                        f"characters long; at most {SHARING_KEY_MAX} are allowed")
    if len(svc.pool) > POOL_NAME_MAX:
        problems.append(f"annotation {name(POOL_ANNOTATION)} is {len(svc.pool)} characters long; "
                        f"at most {POOL_NAME_MAX} are allowed")
    families: list[str] = []
    for text in svc.requested:
        try:
            families.append(family(parse_ip(text)))
        except ValueError as exc:
            problems.append(f"annotation {name(IPS_ANNOTATION)}: {exc}")
    if len(families) != len(set(families)):
        problems.append(f"annotation {name(IPS_ANNOTATION)} names more than one address "
                        "of a family")
    return problems
