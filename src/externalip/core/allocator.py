"""The allocation state of one planning pass (core.desired): which address
serves which Services, what is taken, which pools a Service may use. Pure.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from externalip.core import tenancy
from externalip.core.addresses import IPAddress, claim_ip, family, parse_ip
from externalip.core.model import Claim
from externalip.core.pools import AddressPool
from externalip.core.services import ServiceView

if TYPE_CHECKING:
    from externalip.core.desired import World


@dataclass
class Wanted:
    services: set[str] = field(default_factory=set)
    pool: str = ""
    sharing_key: str = ""


class Allocator:
    """Allocation state of one pass: which address serves which Services."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.want: dict[IPAddress, Wanted] = {}
        self.by_ip: dict[IPAddress, Claim] = {}
        # Service -> addresses a pool gave it (an index: scanning every claim
        # per Service made each pass quadratic).
        self.pooled: dict[str, list[IPAddress]] = defaultdict(list)
        self._taken: dict[int, set[int]] = {}
        # Where the last search in a pool ended: nothing is freed during a
        # pass, so the next free address is never below it.
        self.cursor: dict[str, int] = {}
        for claim in world.claims.values():
            try:
                ip = claim_ip(claim.spec.cidr)
            except ValueError:
                continue
            self.by_ip[ip] = claim
            if claim.spec.pool:
                for svc in claim.spec.services:
                    self.pooled[svc].append(ip)

    def taken(self, version: int) -> set[int]:
        """Addresses of a family held by claims or by this pass (kept up to date)."""
        if version not in self._taken:
            self._taken[version] = {int(ip) for ip in (*self.by_ip, *self.want,
                                                       *self.world.node_addresses,
                                                       *self.world.held,
                                                       *self.world.conflicts)
                                    if ip.version == version}
        return self._taken[version]

    def owners(self, ip: IPAddress) -> set[str]:
        """Services that hold ip in this pass, or held it before and still exist."""
        owners = set(self.want[ip].services) if ip in self.want else set()
        claim = self.by_ip.get(ip)
        if claim is not None:
            owners |= {s for s in claim.spec.services if s in self.world.services}
        return owners

    def can_share(self, ip: IPAddress, svc: ServiceView) -> bool:
        others = self.owners(ip) - {svc.key}
        if not others:
            return True
        if not svc.sharing_key:
            return False
        for key in others:
            other = self.world.services[key]
            if other.sharing_key != svc.sharing_key or other.ports & svc.ports:
                return False
        return True

    def take(self, ip: IPAddress, svc: ServiceView, pool: str = "") -> None:
        if ip.version in self._taken:
            self._taken[ip.version].add(int(ip))
        want = self.want.setdefault(ip, Wanted())
        want.services.add(svc.key)
        want.pool = want.pool or pool
        want.sharing_key = want.sharing_key or svc.sharing_key

    def pools_for(self, svc: ServiceView, fam: str, *, chosen: bool = False) -> list[AddressPool]:
        """The pools of a family this Service may get addresses from.

        A pool's `namespaces` and `serviceSelector` hold on every path (a
        named pool, a requested address, sharing). `autoAssign: false` only
        keeps a pool out of free choice: `chosen` (the Service names the pool
        or an address) lifts it.
        """
        out = []
        for pool in self.world.pools:
            if pool.family != fam or not tenancy.permits(pool, svc):
                continue
            if svc.pool:
                if pool.name == svc.pool:
                    out.append(pool)
            elif pool.auto_assign or chosen:
                out.append(pool)
        return out

    def pool_of(self, ip: IPAddress, svc: ServiceView) -> AddressPool | None:
        """The pool that could have given `ip` to this Service, if any."""
        return next((p for p in self.pools_for(svc, family(ip), chosen=True)
                     if p.contains(ip)), None)

    def held_elsewhere(self, ip: IPAddress) -> str:
        """The node that still holds `ip` although no claim reserves it, or ""."""
        return "" if ip in self.by_ip else self.world.held.get(ip, "")

    def kept(self, svc: ServiceView, fam: str) -> IPAddress | None:
        """The address of a family already in the Service's
        status.loadBalancer.ingress, when a pool would give it to this Service
        by free choice and nobody else holds or answers for it (no claim of ours records it
        yet): a Service another controller served (MetalLB, before `externalip
        migrate metallb`) keeps its address instead of being renumbered."""
        for text in svc.ingress:
            try:
                ip = parse_ip(text)
            except ValueError:
                continue
            if family(ip) != fam or self.refusal(ip, svc)[0] or not self.can_share(ip, svc):
                continue
            if ip in self.world.conflicts or self.held_elsewhere(ip):
                continue  # another host answers for it, or a cut-off node still has it
            if any(p.contains(ip) for p in self.pools_for(svc, fam)):
                return ip
        return None

    def refusal(self, ip: IPAddress, svc: ServiceView) -> tuple[str, str]:
        return tenancy.refusal(ip, svc, self.world.pools, self.world.node_addresses)
