"""Status conditions in Kubernetes' shape (metav1.Condition), for `kubectl wait`. Pure.

Every condition we write goes into a status write the program makes anyway
(the claim status of the agent, the Service status of the scheduler, the pool
status), so conditions cost no API request of their own; issue 16 caps the
whole system at 3 requests per LoadBalancer Service. A condition keeps its
lastTransitionTime while its status stays the same, as the API conventions
ask, so rewriting one never looks like a change.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from externalip.core.model import Claim

TRUE, FALSE, UNKNOWN = "True", "False", "Unknown"

# IpClaim: the scheduler gave it a node; the node's agent holds the address.
SCHEDULED, READY = "Scheduled", "Ready"
# IpClaimPool: usable at all; no free address left.
VALID, EXHAUSTED = "Valid", "Exhausted"
# IpNode: the scheduler judges its agent alive (Lease or peers' heartbeats).
HEALTHY = "Healthy"
# Service: its address is allocated, published in status.loadBalancer and
# placed on a node. Qualified with our domain: a Service's conditions are
# shared with other controllers, and we replace only our own.
SERVICE = "externalip.io/AddressAssigned"
MESSAGE_MAX = 1024  # our CRDs' limit; Services allow 32 KiB


@dataclass(frozen=True)
class Condition:
    type: str
    status: str
    reason: str
    message: str

    def to_dict(self, since: str) -> dict[str, Any]:
        return {"type": self.type, "status": self.status, "reason": self.reason,
                "message": self.message[:MESSAGE_MAX], "lastTransitionTime": since}

    @classmethod
    def of(cls, kind: str, ok: bool, reason: str, message: str) -> Condition:
        return cls(kind, TRUE if ok else FALSE, reason, message)


def find(conditions: Iterable[Mapping[str, Any]] | None, kind: str) -> Condition | None:
    """The condition of this type in a status' list, without its timestamp."""
    for cond in conditions or ():
        if cond.get("type") == kind:
            return Condition(kind, str(cond.get("status") or UNKNOWN),
                             str(cond.get("reason") or ""), str(cond.get("message") or ""))
    return None


def merge(existing: Iterable[Mapping[str, Any]] | None, new: Iterable[Condition],
          now: str) -> list[dict[str, Any]]:
    """The list to write: ours replaced, everyone else's kept in place.

    A replaced condition keeps its lastTransitionTime if its status did not
    change (a new reason or message is not a transition)."""
    wanted = {c.type: c for c in new}
    out: list[dict[str, Any]] = []
    for cond in existing or ():
        kind = cond.get("type")
        if kind not in wanted:
            out.append(dict(cond))
            continue
        fresh = wanted.pop(str(kind))
        same = cond.get("status") == fresh.status and cond.get("lastTransitionTime")
        out.append(fresh.to_dict(str(cond["lastTransitionTime"]) if same else now))
    out += [c.to_dict(now) for c in wanted.values()]
    return out


def differs(existing: Iterable[Mapping[str, Any]] | None, new: Iterable[Condition]) -> bool:
    """Would writing `new` change anything but timestamps?"""
    return any(find(existing, c.type) != c for c in new)


class _Said(Protocol):  # core.desired.Event (frozen: read-only attributes)
    @property
    def service(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def reason(self) -> str: ...
    @property
    def message(self) -> str: ...


class _Wants(Protocol):  # core.services.ServiceView
    @property
    def key(self) -> str: ...
    @property
    def families(self) -> tuple[str, ...]: ...


def for_service(svc: _Wants, claims: Sequence[Claim],
                events: Iterable[_Said]) -> Condition | None:
    """The Service's condition after a pass, from the claims of its published
    addresses and the plan's Events; None while there is nothing to say (its
    claim is being created: writing that would cost a request).

    Holding itself is the claims' `Ready`: waiting for it here would cost a
    request per Service, so only its failures are said here (no eligible
    node, an agent's refusal), on their own rare writes."""
    ingress = [c.spec.cidr.split("/")[0] for c in claims]
    unheld = [why for c in claims if (why := _unheld(c))]
    if unheld:
        return Condition.of(SERVICE, False, *unheld[0])
    if ingress and len(ingress) >= len(svc.families):
        return Condition.of(SERVICE, True, "IPAllocated",
                            f"{', '.join(ingress)} in status.loadBalancer.ingress")
    warnings = [e for e in events if e.service == svc.key and e.type == "Warning"]
    if warnings:  # the first says why (not every) address is assigned
        return Condition.of(SERVICE, False, warnings[0].reason, warnings[0].message)
    return None


def invalid(problems: str) -> Condition:
    return Condition.of(SERVICE, False, "InvalidService", problems)


def _unheld(claim: Claim) -> tuple[str, str] | None:
    """Why nobody can hold a published address, if that is so: no node may
    hold it, or the node's agent refused it (its status says why; the
    scheduler then places it elsewhere, core.desired)."""
    ip = claim.spec.cidr.split("/")[0]
    if not claim.spec.node_name:
        return "NoEligibleNode", f"no live eligible node can hold {ip}"
    if not claim.status.ready and claim.status.message:
        return "AddressRefused", f"node {claim.spec.node_name} cannot hold {ip}: " \
            f"{claim.status.message}"
    return None


def pending(ingress: tuple[str, ...]) -> Condition:
    """Said only along a write that happens anyway (an address withdrawn)."""
    return Condition.of(SERVICE, False, "Pending",
                        "waiting for the IpClaim of every address to exist"
                        + (f" (have {', '.join(ingress)})" if ingress else ""))


def unscheduled(claim: Claim, node: str) -> Condition | None:
    """`Scheduled=False` for a claim the plan leaves without a node, unless it
    already says so: the scheduler writes it on that failure path only."""
    if node:
        return None
    said = Condition.of(SCHEDULED, False, "NoEligibleNode",
                        f"no live eligible node can hold {claim.spec.cidr.split('/')[0]}")
    return None if find(claim.conditions, SCHEDULED) == said else said
