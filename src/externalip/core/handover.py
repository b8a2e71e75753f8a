"""Make-before-break: how a drained node gives an address up. Pure.

The scheduler moves a claim off a draining node to another one and names
the draining node in `spec.handoverFrom` (core.desired). That node then:

1. keeps holding and answering for the address while the claim's status
   names no other ready holder: the new holder has not added and
   announced it yet, and nobody else would answer;
2. once the status names another ready holder (it writes that after it
   added the address and sent its first announcement), or the node hears
   another MAC claim the address on the wire (that announcement itself,
   usually well before the status arrives), goes quiet for
   the address: it keeps it in the kernel, so packets still sent to its
   MAC by clients that missed the announcement are served, but it no
   longer answers ARP/ND for it nor announces it (net.nftfence), so
   every client that asks from now on learns the new holder's MAC;
3. removes it `delay` seconds after step 2 began (--handover-delay).

Both nodes hold the address only in steps 2-3, and only the new one
answers ARP/ND then; both answer only between the new holder's
announcement and the old one hearing it (or reading its status). The
time of step 2 is this agent's own clock: a restarted agent waits a full
delay again, which only lengthens a quiet overlap (a quiet address is
never added again, only kept: core.holding).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from externalip.core.model import Claim


def handing_over(claim: Claim, node: str) -> bool:
    """`node` gives this claim's address up to another node."""
    return claim.spec.handover_from == node and claim.spec.node_name != node


def new_holder_ready(claim: Claim, node: str) -> bool:
    """Another node says it holds the address and has announced it."""
    return claim.status.ready and claim.status.holder not in ("", node)


@dataclass(frozen=True)
class Step:
    hold: tuple[Claim, ...] = ()  # still ours to answer for (step 1)
    quiet: tuple[Claim, ...] = ()  # kept, not answered for (step 2)
    next_due: float | None = None  # seconds until the next quiet one is let go


class Handover:
    """Remembers when each hand-over's new holder was first seen ready."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self._ready_at: dict[str, float] = {}
        self._announced: set[str] = set()

    def announced(self, name: str) -> None:
        """Another MAC claimed the address of a claim we hand over (its
        announcement, or an ARP/ND answer): the new holder has it, even if
        its status has not reached us yet. Quiet from the next step on."""
        self._announced.add(name)

    def step(self, claims: Iterable[Claim], node: str, now: float) -> Step:
        hold: list[Claim] = []
        quiet: list[Claim] = []
        due: float | None = None
        seen: dict[str, float] = {}
        for claim in claims:
            if not handing_over(claim, node):
                continue
            if not (new_holder_ready(claim, node) or claim.name in self._announced):
                hold.append(claim)
                continue
            seen[claim.name] = since = self._ready_at.get(claim.name, now)
            left = since + self.delay - now
            if left > 0:
                quiet.append(claim)
                due = left if due is None else min(due, left)
        self._ready_at = seen
        self._announced &= {c.name for c in (*hold, *quiet)}
        return Step(tuple(hold), tuple(quiet), due)
