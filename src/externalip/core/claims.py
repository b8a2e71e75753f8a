"""Claims -> wants, and results -> claim statuses, for the claims-mode agent. Pure."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping

from externalip.core.addresses import IPInterface
from externalip.core.holding import Want
from externalip.core.model import Claim, ClaimStatus, NodeStatus
from externalip.core.special import special


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


def status_writes(
    claims: Iterable[Claim],
    node: str,
    *,
    held: set[str],
    problems: Mapping[str, str],
    now: str,
    written: Mapping[str, tuple[str, ClaimStatus]],
) -> dict[str, ClaimStatus]:
    """Claims whose status must be written, with the new status.

    `written` maps claim name -> (resourceVersion the last write was based on,
    status written): while the informer has not yet delivered our own write,
    the stored claim still shows the old status; writing again would be noise.
    """
    out: dict[str, ClaimStatus] = {}
    for claim in claims:
        if claim.spec.node_name != node:
            continue
        want = desired_status(claim, node, claim.name in held, problems.get(claim.name, ""), now)
        if want == claim.status:
            continue
        last = written.get(claim.name)
        if last is not None and last == (claim.resource_version, want):
            continue
        out[claim.name] = want
    return out


def node_status(link: str, held: Iterable[Want], version: str,
                own: Iterable[IPInterface] = ()) -> NodeStatus:
    """The IpNode inventory: the addresses held for claims, and the node's own
    addresses (without loopback, link-local and other special ones)."""
    return NodeStatus(
        link=link,
        addresses=tuple(sorted({str(w.interface.ip) for w in held})),
        agent_version=version,
        node_addresses=tuple(sorted({str(i.ip) for i in own if not special(i.ip)})),
    )
