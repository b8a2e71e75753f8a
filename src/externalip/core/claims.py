"""Claims -> wants, and results -> claim statuses, for the claims-mode agent. Pure."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping

from externalip.core.holding import Want
from externalip.core.model import Claim, ClaimStatus, NodeStatus


def wants_from_claims(
    claims: Iterable[Claim], node: str, default_link: str
) -> tuple[list[Want], dict[str, str]]:
    """The wants of the claims assigned to `node`, and claims we cannot parse (name -> why).

    The watch is filtered by label, but the label and spec.nodeName could
    disagree for a moment; we hold only what both assign to us.
    """
    wants: list[Want] = []
    invalid: dict[str, str] = {}
    for claim in claims:
        if claim.spec.node_name != node:
            continue
        try:
            interface = ipaddress.ip_interface(claim.spec.cidr)
        except ValueError:
            invalid[claim.name] = f"spec.cidr {claim.spec.cidr!r} is not an address/prefix"
            continue
        wants.append(Want(interface, claim.spec.link or default_link, (claim.name,)))
    return wants, invalid


def desired_status(
    claim: Claim, node: str, held: bool, problem: str, now: str
) -> ClaimStatus:
    """What the status of `claim` should say after this reconcile.

    `since` keeps its old value while this node keeps holding the address (a
    restarted agent adopts, it does not re-configure).
    """
    if held:
        old = claim.status
        since = old.since if old.ready and old.holder == node and old.since else now
        return ClaimStatus(ready=True, holder=node, since=since)
    return ClaimStatus(ready=False, holder="", message=problem)


class StatusLedger:
    """Which claim statuses this agent must write, remembering what it wrote.

    While the informer has not yet delivered our own write, the stored claim
    still shows the old status; writing the same status again on the same
    resourceVersion would be noise. A claim changed since (a newer
    resourceVersion) is judged afresh.
    """

    def __init__(self) -> None:
        self._written: dict[str, tuple[str, ClaimStatus]] = {}

    def due(self, claims: Iterable[Claim], node: str, *, held: set[str],
            problems: Mapping[str, str], now: str) -> dict[str, ClaimStatus]:
        """Claims whose status must be written, with the new status."""
        out: dict[str, ClaimStatus] = {}
        for claim in claims:
            if claim.spec.node_name != node:
                continue
            want = desired_status(claim, node, claim.name in held,
                                  problems.get(claim.name, ""), now)
            if want == claim.status:
                continue
            if self._written.get(claim.name) == (claim.resource_version, want):
                continue
            out[claim.name] = want
        return out

    def wrote(self, claim: Claim, status: ClaimStatus) -> None:
        """`status` was written on top of `claim` as we saw it."""
        self._written[claim.name] = (claim.resource_version, status)

    def keep(self, names: Iterable[str]) -> None:
        """Forget claims that are gone (bounded memory)."""
        alive = set(names)
        for name in set(self._written) - alive:
            del self._written[name]


def node_status(link: str, held: Iterable[Want], version: str) -> NodeStatus:
    return NodeStatus(
        link=link,
        addresses=tuple(sorted({str(w.interface.ip) for w in held})),
        agent_version=version,
    )
