"""Yield an address that another node announces while we are cut off. Pure.

The scheduler moves a node's claims once its Lease lapses. A node cut off
from the API keeps its addresses (that is what users expect when the whole
control plane is down, since nobody can take them over then), but it cannot
learn through the API that its claims moved. It can hear it: the new holder
announces the address from another MAC. While our own Lease renewals are
failing, such an announcement means "moved": we yield the address. When
renewals succeed again the claims are authoritative once more and the
yielded set is forgotten (if the claim is still ours, we hold it again).

While renewals succeed, a foreign announcement of one of our addresses is
only logged: the API says the address is ours, and yielding would let a
misconfigured host take a Service down.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from externalip.core.addresses import IPAddress
from externalip.core.holding import Want


@dataclass
class Fence:
    yielded: set[IPAddress] = field(default_factory=set)

    def heard(self, ip: IPAddress, held: Iterable[Want], renewing: bool) -> bool:
        """Another MAC announced ip. True if we now yield it (caller reconciles)."""
        if renewing or ip in self.yielded:
            return False
        if any(w.interface.ip == ip for w in held):
            self.yielded.add(ip)
            return True
        return False

    def filter(self, wants: list[Want], renewing: bool) -> list[Want]:
        if renewing:
            self.yielded.clear()
            return wants
        return [w for w in wants if w.interface.ip not in self.yielded]
