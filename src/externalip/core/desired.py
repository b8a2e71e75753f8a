"""Services + pools + nodes + existing claims -> the claims there should be.

`plan(world)` is the whole scheduler decision as one pure function. It is
level-based: it looks at everything every time and returns only the
differences to write, so a restarted scheduler with nothing to change writes
nothing, and a missed event is healed on the next pass.

Allocation keeps what exists first (every Service's current claims are
adopted before anything new is handed out, in creation order), so a restart
never re-allocates, and two Services can never be given one address by this
function; two racing schedulers are kept apart by the claim name (see
addresses.claim_name): the second create of the same address fails.

Events carry news only: failures (Warnings) and moves. An allocation is not
news: the Service's status (ingress, condition) and the claim say it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from externalip.core import conditions, placement
from externalip.core.addresses import IPAddress, claim_name, family, parse_ip, text
from externalip.core.allocator import Allocator as _Allocator
from externalip.core.allocator import Wanted as _Want
from externalip.core.model import Claim, ClaimSpec
from externalip.core.pools import AddressPool
from externalip.core.services import ServiceView, invalid_fields

NORMAL, WARNING = "Normal", "Warning"


@dataclass(frozen=True)
class Event:
    service: str  # namespace/name, or "" for events about claims
    type: str
    reason: str
    message: str


@dataclass(frozen=True)
class World:
    services: Mapping[str, ServiceView]
    claims: Mapping[str, Claim]
    pools: Sequence[AddressPool]
    nodes: Mapping[str, Mapping[str, str]]  # eligible nodes -> their labels
    endpoints: Mapping[str, frozenset[str]] = field(default_factory=dict)  # svc -> nodes
    mask4: int = 32
    mask6: int = 128
    policy: str = placement.FAIR
    # Every node's own addresses (Node status.addresses, IpNode inventory) ->
    # the node: never allocated, never placed (another node announcing them
    # would steal the node's traffic).
    node_addresses: Mapping[IPAddress, str] = field(default_factory=dict)
    # Addresses agents report holding (IpNode status.addresses) -> the node. One
    # whose claim is gone is still on that node (cut off from the API, it did
    # not learn of the delete): it is not handed to anyone until released, or
    # two nodes would answer for it.
    held: Mapping[IPAddress, str] = field(default_factory=dict)
    # Addresses another host on the segment uses (the agents' probes) -> what
    # is known of it: never chosen from a pool; a Service whose pool address
    # turned out to be one gets another.
    conflicts: Mapping[IPAddress, str] = field(default_factory=dict)
    # claim cidr -> nodes whose agents refused it lately: placed elsewhere if
    # another node is eligible (scheduler.refusals keeps the memory)
    refused: Mapping[str, frozenset[str]] = field(default_factory=dict)
    # live nodes labelled for drain: no new claims or standby roles; theirs move away
    draining: frozenset[str] = frozenset()
    # remembered rankings: the scheduler keeps one from pass to pass
    memo: placement.Memo = field(default_factory=placement.Memo)


@dataclass
class Plan:
    create: list[Claim] = field(default_factory=list)
    update: list[Claim] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    ingress: dict[str, tuple[str, ...]] = field(default_factory=dict)
    external_ips: dict[str, tuple[str, ...]] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    conditions: dict[str, conditions.Condition] = field(default_factory=dict)  # with ingress

    @property
    def writes(self) -> int:
        return (len(self.create) + len(self.update) + len(self.delete) + len(self.ingress)
                + len(self.external_ips))


def _held(alloc: _Allocator, svc: ServiceView) -> list[IPAddress]:
    """Addresses a pool gave this Service earlier (its claims name it and a pool)."""
    return sorted(alloc.pooled.get(svc.key, ()), key=lambda ip: (ip.version, int(ip)))


def _usable(alloc: _Allocator, svc: ServiceView, plan: Plan) -> list[IPAddress]:
    """Its pool addresses it may keep: not refused, not used by another host."""
    out = []
    for ip in _held(alloc, svc):
        conflict = alloc.world.conflicts.get(ip)
        if conflict is not None and text(ip) not in svc.requested:
            plan.events.append(Event(svc.key, WARNING, "AddressConflict",
                                     f"{ip} is in use by another host on the segment "
                                     f"({conflict}); the pool skips it"))
        elif not alloc.refusal(ip, svc)[0]:
            out.append(ip)
    return out


def _allocate_lb(alloc: _Allocator, svc: ServiceView, plan: Plan) -> tuple[IPAddress, ...]:
    """One address per family the Service asks for, for status.loadBalancer.ingress.

    Unlike the seed, a LoadBalancer address is NOT appended to spec.externalIPs:
    kube-proxy already routes the ingress IP (ipMode: VIP), writing the spec
    would be a third write per Service and one the user's own apply would
    fight over (the spec is theirs, the status ours), and clusters that deny
    spec.externalIPs (the CVE-2020-8554 admission policy) could then not use
    LoadBalancer Services at all. The requested addresses were validated
    before (services.invalid_fields).
    """
    held = [ip for ip in _usable(alloc, svc, plan) if text(ip) not in svc.external_ips]
    requested = {family(ip): ip for ip in map(parse_ip, svc.requested)}
    out: list[IPAddress] = []
    for fam in svc.families:
        ip = requested.get(fam)
        pool: AddressPool | None
        if ip is not None:
            pool = _requested_pool(alloc, svc, ip, plan)
            if pool is None:
                continue
        else:
            ip = next((h for h in held if family(h) == fam), None) or alloc.kept(svc, fam)
            pool = alloc.pool_of(ip, svc) if ip is not None else None
            if ip is None:
                ip, pool = _fresh(alloc, svc, fam, plan)
                if ip is None:
                    continue
        alloc.take(ip, svc, pool.name if pool else "")
        out.append(ip)
    return tuple(out)


def _requested_pool(alloc: _Allocator, svc: ServiceView, ip: IPAddress,
                    plan: Plan) -> AddressPool | None:
    """The pool a requested address comes from, or None with a Warning why not."""
    reason, message = alloc.refusal(ip, svc)
    pool = alloc.pool_of(ip, svc) if not reason else None
    if ip in alloc.world.conflicts:  # asked for by name: kept, but said
        plan.events.append(Event(svc.key, WARNING, "AddressConflict",
                                 f"{ip} is in use by another host on the segment "
                                 f"({alloc.world.conflicts[ip]})"))
    if not reason and pool is None:
        reason, message = "RequestedIPUnavailable", f"{ip} is not in any pool this Service may use"
    if not reason and not alloc.can_share(ip, svc):
        others = ", ".join(sorted(alloc.owners(ip) - {svc.key}))
        reason, message = "SharingConflict", (f"{ip} is in use by {others} and cannot be "
                                              "shared (different sharing key or overlapping ports)")
    if reason:
        plan.events.append(Event(svc.key, WARNING, reason, message))
        return None
    return pool


def _fresh(alloc: _Allocator, svc: ServiceView, fam: str,
           plan: Plan) -> tuple[IPAddress | None, AddressPool | None]:
    pools = alloc.pools_for(svc, fam)
    if svc.sharing_key:  # join an address already shared under this key...
        for ip, want in sorted(alloc.want.items(), key=lambda kv: (kv[0].version, int(kv[0]))):
            if want.sharing_key != svc.sharing_key or family(ip) != fam \
                    or not alloc.can_share(ip, svc):
                continue
            pool = alloc.pool_of(ip, svc)  # ...only if it could have been given it itself
            if pool is not None:
                return ip, pool
    if not pools:
        plan.events.append(Event(svc.key, WARNING, "NoPool",
                                 f"no {fam} pool can serve this Service"
                                 + (f" (pool {svc.pool!r} not found, not {fam}, or it does "
                                    "not serve this namespace or these labels)"
                                    if svc.pool else "")))
        return None, None
    for pool in pools:
        taken = alloc.taken(pool.version)
        free = pool.first_free(taken, alloc.cursor.get(pool.name, 0))
        if free is not None:
            alloc.cursor[pool.name] = int(free)
            return free, pool
    plan.events.append(Event(svc.key, WARNING, "PoolExhausted",
                             f"no free {fam} address in pool(s) "
                             f"{', '.join(p.name for p in pools)}"))
    return None, None


def _allocate_auto(alloc: _Allocator, svc: ServiceView, plan: Plan) -> tuple[str, ...]:
    """The seed's external-ip=auto: one pool address appended to spec.externalIPs,
    once the claim that reserves it exists (the pass after it was allocated)."""
    held = _usable(alloc, svc, plan)
    if any(str(ip) in svc.external_ips for ip in held):
        return svc.external_ips
    if held:
        ip = held[0]
        alloc.take(ip, svc, alloc.by_ip[ip].spec.pool)
        return (*svc.external_ips, str(ip))
    fresh, pool = _fresh(alloc, svc, svc.families[0] if svc.families else "IPv4", plan)
    if fresh is not None and pool is not None:
        alloc.take(fresh, svc, pool.name)
    return svc.external_ips


def _released_auto(alloc: _Allocator, svc: ServiceView) -> tuple[str, ...]:
    """Without the annotation, pool addresses we appended go away again."""
    ours = {str(ip) for ip in _held(alloc, svc)}
    return tuple(ip for ip in svc.external_ips if ip not in ours)


def _accepted(alloc: _Allocator, ip: IPAddress, svc: ServiceView) -> bool:
    """The API server has accepted a claim of `ip` for this Service: only then
    may its address be published (a rejected claim means nobody holds it)."""
    claim = alloc.by_ip.get(ip)
    return claim is not None and svc.key in claim.spec.services


def _adopt(alloc: _Allocator, svc: ServiceView, out: Plan) -> None:
    """Take the Service's spec.externalIPs (those it may use) before any allocation."""
    external = svc.external_ips
    if not svc.auto and not svc.load_balancer:
        released = _released_auto(alloc, svc)
        if released != external:
            out.external_ips[svc.key] = released
            external = released
    for written in external:
        try:
            ext_ip = parse_ip(written)
        except ValueError:
            continue  # the API server validates spec.externalIPs
        reason, message = alloc.refusal(ext_ip, svc)
        if reason:
            out.events.append(Event(svc.key, WARNING, reason, message))
            continue
        claim = alloc.by_ip.get(ext_ip)
        alloc.take(ext_ip, svc, claim.spec.pool
                   if claim and svc.key in claim.spec.services else "")


def plan(world: World) -> Plan:
    out = Plan()
    alloc = _Allocator(world)
    ordered = sorted(world.services.values(), key=lambda s: (s.created, s.key))
    valid = []
    for svc in ordered:  # validate every input before allocating anything
        problems = invalid_fields(svc)
        if not problems:
            valid.append(svc)
            continue
        out.events.append(Event(svc.key, WARNING, "InvalidService", "; ".join(problems)))
        invalid = conditions.invalid("; ".join(problems))
        if svc.load_balancer and (svc.ingress or svc.condition != invalid):
            out.ingress[svc.key], out.conditions[svc.key] = (), invalid
    # Adopt before allocating: every Service's spec.externalIPs and existing
    # pool addresses are taken first, so new Services only get what is free.
    for svc in valid:
        _adopt(alloc, svc, out)
    for svc in valid:
        if svc.load_balancer:
            accepted = [ip for ip in _allocate_lb(alloc, svc, out) if _accepted(alloc, ip, svc)]
            ingress = tuple(map(text, accepted))
            cond = conditions.for_service(svc, [alloc.by_ip[ip] for ip in accepted], out.events)
            if ingress != svc.ingress or cond not in (None, svc.condition):  # one patch for both
                out.ingress[svc.key] = ingress
                out.conditions[svc.key] = cond or conditions.pending(ingress)
        elif svc.auto:
            external = _allocate_auto(alloc, svc, out)
            if external != svc.external_ips:
                out.external_ips[svc.key] = external
    _claims(world, alloc, out)
    return out


def _mask(world: World, ip: IPAddress) -> int:
    return world.mask4 if ip.version == 4 else world.mask6


def _claims(world: World, alloc: _Allocator, out: Plan) -> None:
    desired: dict[str, tuple[IPAddress, _Want]] = {
        claim_name(ip, _mask(world, ip)): (ip, want) for ip, want in alloc.want.items()}
    load = placement.Loads(world.policy)
    for name, claim in world.claims.items():
        if name in desired and claim.spec.node_name in world.nodes:
            load.load[claim.spec.node_name] += 1
    for name in sorted(set(world.claims) - set(desired)):
        out.delete.append(name)
    known: dict[tuple[object, ...], tuple[frozenset[str], frozenset[str]]] = {}
    for name in sorted(desired):
        ip, want = desired[name]
        current = world.claims.get(name)
        if current is None and _still_held(alloc, ip, want, out):
            continue
        spec = ClaimSpec(
            cidr=f"{text(ip)}/{_mask(world, ip)}",
            node_name=current.spec.node_name if current else "",
            link=current.spec.link if current else "",
            pool=(current.spec.pool if current and current.spec.pool else want.pool),
            services=tuple(sorted(want.services)),
            sharing_key=want.sharing_key,
            handover_from=current.spec.handover_from if current else "",
            ports=tuple(sorted({p for s in want.services for p in world.services[s].ports})),
        )
        eligible, placeable = placement.eligible(world, spec, known)
        spec = _record_takeover(current, spec, eligible, out)
        if spec.node_name not in placeable:
            spec, notes = placement.place(world, spec, ip, placeable or frozenset(
                eligible & {spec.node_name}), load, new=current is None)
            out.events += [Event(s, *note) for note in notes for s in spec.services]
        elif current is not None and spec.node_name != current.spec.node_name:
            spec = replace(spec, handover_from="")  # a takeover recorded: nothing to hand over
        spec = replace(spec, standbys=world.memo.standbys(name, spec.node_name, placeable)
                       if spec.node_name else ())
        if current is None:
            out.create.append(Claim(name=name, spec=spec))
        elif current.spec != spec:
            out.update.append(replace(current, spec=spec))
    world.memo.end_pass()


def _still_held(alloc: _Allocator, ip: IPAddress, want: _Want, out: Plan) -> bool:
    """A node cut off from the API still holds `ip` for a deleted claim: a new
    claim could land on a second node. It waits until the address is released."""
    node = alloc.held_elsewhere(ip)
    if node:
        out.events += [Event(s, WARNING, "AddressStillHeld",
                             f"{ip} is still held by node {node} for a deleted claim; "
                             "waiting until it releases it") for s in sorted(want.services)]
    return bool(node)


def _record_takeover(current: Claim | None, spec: ClaimSpec, eligible: frozenset[str],
                     out: Plan) -> ClaimSpec:
    """A standby took the address over on its own (core.liveness): make it the
    record. The takeover itself never waited for this write."""
    if current is None or not current.status.ready:
        return spec
    holder = current.status.holder
    # (a node handing the address over names itself until the new holder writes)
    if holder in ("", spec.node_name, spec.handover_from) or holder not in eligible:
        return spec
    out.events += [Event(s, NORMAL, "ClaimTakenOver",
                         f"{current.spec.cidr} taken over by node {holder} "
                         f"(was {spec.node_name or 'unassigned'})") for s in spec.services]
    return replace(spec, node_name=holder)

