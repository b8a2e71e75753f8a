"""Claims -> wants, and results -> claim statuses, for the claims-mode agent. Pure.

Which claims this node holds (`to_hold`): those assigned to it, unless
another live node has taken them over and the scheduler has not recorded it
yet; those it has taken over itself (core.liveness) until the scheduler
records or reassigns them.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Collection, Iterable, Mapping
from dataclasses import replace

from externalip.core import liveness
from externalip.core.addresses import IPAddress, IPInterface
from externalip.core.conditions import READY, SCHEDULED, Condition, differs
from externalip.core.handover import handing_over
from externalip.core.holding import Want
from externalip.core.model import Claim, ClaimStatus, NodeStatus
from externalip.core.special import special


def to_hold(
    claims: Iterable[Claim],
    node: str,
    evidence: liveness.Evidence,
    timing: liveness.Timing,
    taken: Mapping[str, str],
) -> tuple[list[Claim], dict[str, str]]:
    """The claims `node` holds now, and its takeovers still in force
    (claim name -> the holder it was taken from, as `taken` is)."""
    hold: list[Claim] = []
    still: dict[str, str] = {}
    for claim in claims:
        assigned, holder = claim.spec.node_name, claim.status.holder
        if assigned == node:
            # Another node took it over from us and the scheduler has not
            # recorded that yet: it is theirs while they are not down.
            taken_from_us = holder not in ("", node) and claim.status.taken_from == node
            if taken_from_us and not liveness.is_down(evidence, timing, holder):
                continue
            hold.append(claim)
        elif assigned and (taken.get(claim.name) == assigned or liveness.takes_over(
                evidence, timing, assigned, claim.spec.standbys)):
            hold.append(claim)
            still[claim.name] = assigned
    return hold, still


@functools.lru_cache(maxsize=1 << 16)
def _interface(cidr: str) -> IPInterface:
    """Parsed once: every pass reads every claim's address (ipaddress is slow)."""
    return ipaddress.ip_interface(cidr)


def wants_from_claims(
    claims: Iterable[Claim], node: str, default_link: str, *, handover: bool = False,
    quiet: bool = False
) -> tuple[list[Want], dict[str, str]]:
    """The wants of the claims assigned to `node`, and claims we cannot parse (name -> why).

    `claims` are those the node holds (see `to_hold`); with `node` given,
    only those assigned to it are kept (the label and spec.nodeName could
    disagree for a moment; we hold only what both assign to us).
    """
    wants: list[Want] = []
    invalid: dict[str, str] = {}
    for claim in claims:
        if node and claim.spec.node_name != node:
            continue
        try:
            interface = _interface(claim.spec.cidr)
        except ValueError:
            invalid[claim.name] = f"spec.cidr {claim.spec.cidr!r} is not an address/prefix"
            continue
        wants.append(Want(interface, claim.spec.link or default_link, (claim.name,),
                          handover or quiet, quiet))
    return wants, invalid


def first_placements(claims: Iterable[Claim], wants: Iterable[Want],
                     present: Collection[IPAddress]) -> list[Want]:
    """The wants to probe the segment for before adding them (net.probe): their
    claim has never been held (no holder in its status) and the address is not
    on the node already. A takeover (the claim names a holder) or a restarted
    agent (the address is present) never probes: the address is ours."""
    never_held = {c.name for c in claims if not c.status.holder and not c.status.ready}
    return [w for w in wants if w.interface.ip not in present
            and any(owner in never_held for owner in w.owners)]


def desired_status(
    claim: Claim, node: str, held: bool, problem: str, now: str, *, conflict: str = ""
) -> ClaimStatus | None:
    """What the status of `claim` should say after this reconcile; None: not ours to say.

    `since` keeps its old value while this node keeps holding the address (a
    restarted agent adopts, it does not re-configure). Taking an address over
    from another holder raises its term. A node speaks for a claim it holds,
    for one assigned to it that nobody else holds, and to withdraw its own
    name; never over another holder's status.
    """
    old = claim.status
    if handing_over(claim, node):
        return None  # the new holder speaks for it (core.handover)
    if held:
        taken = claim.spec.node_name != node  # a takeover, not a scheduler's move
        taken_from = claim.spec.node_name if taken else ""
        if old.ready and old.holder == node and old.since and old.taken_from == taken_from:
            return ClaimStatus(ready=True, holder=node, since=old.since, term=old.term,
                               taken_from=taken_from)
        return ClaimStatus(ready=True, holder=node, since=now, taken_from=taken_from,
                           term=old.term + 1 if taken else old.term)
    if old.holder and old.holder != node:
        return None
    if node not in (claim.spec.node_name, old.holder):
        return None
    return ClaimStatus(ready=False, holder="", message=problem, term=old.term,
                       conflict=conflict)


def status_conditions(claim: Claim, status: ClaimStatus) -> tuple[Condition, ...]:
    """The `Scheduled` and `Ready` conditions a claim status says, for
    `kubectl wait --for=condition=Ready ipclaim/NAME`; written in the same
    status patch as the status itself, so they cost no request."""
    node = claim.spec.node_name
    if status.taken_from:
        scheduled = Condition.of(SCHEDULED, True, "TakenOver",
                                 f"{status.holder} took it over from {status.taken_from}")
    else:
        scheduled = Condition.of(SCHEDULED, bool(node), "Assigned" if node else "Unassigned",
                                 f"assigned to node {node}" if node else "no node assigned")
    if status.ready:
        ready = Condition.of(READY, True, "Held", f"node {status.holder} holds {claim.spec.cidr}")
    else:
        ready = Condition.of(READY, False, "NotHeld", status.message or "no node holds it")
    return scheduled, ready


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
            problems: Mapping[str, str], now: str,
            conflicts: Mapping[str, str] | None = None) -> dict[str, ClaimStatus]:
        """Claims whose status must be written, with the new status."""
        out: dict[str, ClaimStatus] = {}
        for claim in claims:
            # Judged against our own write while its echo is on the way: against
            # the stored status, a report in the next second (its claims parsed
            # before the write returned) found the claim not held yet and wrote
            # it again with a new `since`: in a burst of new Services, 10-47%
            # of the claims got a second status patch.
            written = self._written.get(claim.name)
            seen = replace(claim, status=written[1]) \
                if written is not None and written[0] == claim.resource_version else claim
            want = desired_status(seen, node, claim.name in held,
                                  problems.get(claim.name, ""), now,
                                  conflict=(conflicts or {}).get(claim.name, ""))
            if want is None:
                continue
            if want == claim.status and not differs(claim.conditions,
                                                    status_conditions(claim, want)):
                continue  # (claims written before conditions existed get them once)
            if written == (claim.resource_version, want):
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


def node_status(link: str, held: Iterable[Want], version: str,
                own: Iterable[IPInterface] = (), peers: Iterable[str] = ()) -> NodeStatus:
    """The IpNode inventory: the addresses held for claims, the node's own
    addresses (without loopback, link-local and other special ones), and the
    peers whose heartbeats the agent hears."""
    return NodeStatus(
        link=link,
        addresses=tuple(sorted({str(w.interface.ip) for w in held})),
        agent_version=version,
        peers=tuple(sorted(peers)),
        node_addresses=tuple(sorted({str(i.ip) for i in own if not special(i.ip)})),
    )


def inventory_urgent(written: NodeStatus | None, status: NodeStatus) -> bool:
    """Whether an inventory change goes out at once rather than at the
    --status-interval pace (agent.inventory). Its readers, and why:

    - `nodeAddresses`: the scheduler never gives a node's own address to a
      Service (core.views.node_addresses); a new one must be known before
      it could be handed out. At once (changes with the node, not Services).
    - `peers`: the scheduler's backstop keeps a node alive while a live
      peer hears it (core.liveness.backstop_alive); one no peer hears any
      more must not outlive its Lease by an interval. At once (changes with
      membership, not Services). `link` and `agentVersion` likewise.
    - `addresses`, the part that grows with Services, may wait:
      - the scheduler's `held` (core.allocator.held_elsewhere) guards an
        address whose claim is gone but which a node cut off from the API
        still holds. While the claim exists, the claim reserves the address
        itself. An addition reported late leaves one interval in which a
        node cut off right after adding would not be known to hold it; the
        agent's probe before a first placement (--probe, on by default)
        refuses such an address on the next node, as it refuses any address
        another host answers for. A removal reported late keeps the address
        reserved that much longer: the safe side (a Service asking for that
        very address waits, with AddressStillHeld, until it is reported).
      - `externalip status` (the HOLDS column) and `externalip drain --wait`
        (done when the node holds nothing) see it up to an interval late.
      Only bursts are paced: the first change after a quiet interval is
      written at once, so a single Service deleted or created is reported
      as promptly as before.
    - the first write of an agent (`written` None) creates the IpNode: at once.
    """
    if written is None:
        return True
    return (written.node_addresses, written.peers, written.link, written.agent_version) != (
        status.node_addresses, status.peers, status.link, status.agent_version)
