"""The report of `externalip status`, computed from listed objects. Pure.

Pools with used/free addresses, claims per node, each node's Lease age (the
agent's heartbeat), the scheduler's leader, and Services still waiting for an
address with the most likely reason. Every decision here is the scheduler's
own: pool use is core.pools.usage, "is this Service ours" is
core.views.serves_load_balancer, and why a Service waits for an address comes
from a dry run of core.desired.plan over the same objects, so the report and
the scheduler cannot disagree.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from externalip.core import desired
from externalip.core.conditions import FALSE, HEALTHY, find
from externalip.core.model import Claim, IpNode, Pool
from externalip.core.pools import AddressPool, PoolError, usage
from externalip.core.pools import build as build_pool
from externalip.core.services import ServiceView
from externalip.core.views import service_view

LEADER_LEASE = "externalip-scheduler"  # --leader-elect-resource-name default
OUR_CLASS = "externalip.io/lb"  # --load-balancer-class default
# the plan's Warnings that explain why a Service has no address (placement
# problems come later, once the address exists, and are reported per claim)
ALLOCATION_REASONS = frozenset({"InvalidService", "RequestedIPUnavailable", "SharingConflict",
                                "NoPool", "PoolExhausted", "SpecialAddress", "NodeAddress",
                                "PoolForbidden"})

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


# --- the report ---------------------------------------------------------------
@dataclass(frozen=True)
class PoolRow:
    name: str
    cidr: str
    total: int
    used: int
    free: int
    auto_assign: bool
    error: str = ""  # why the scheduler cannot use this pool


@dataclass(frozen=True)
class NodeRow:
    name: str
    claims: int
    ready: int
    lease_age: float | None  # seconds since the agent last renewed; None: no Lease
    alive: bool
    draining: bool = False  # labelled for drain, as the scheduler has seen it
    holds: int = 0  # addresses its agent reports holding (handed-over ones until they go)
    healthy: str = ""  # its IpNode's Healthy condition (the scheduler's judgement); "": none


@dataclass(frozen=True)
class ClaimRow:
    name: str
    cidr: str
    node: str
    ready: bool
    services: tuple[str, ...]
    standbys: tuple[str, ...] = ()  # who takes it over, in order, if the node dies
    handover_from: str = ""  # the draining node it moved away from


@dataclass(frozen=True)
class Waiting:
    service: str  # namespace/name
    wants: str
    reason: str


@dataclass(frozen=True)
class Leader:
    holder: str
    age: float | None
    alive: bool


@dataclass(frozen=True)
class Report:
    pools: list[PoolRow] = field(default_factory=list)
    nodes: list[NodeRow] = field(default_factory=list)
    claims: list[ClaimRow] = field(default_factory=list)
    waiting: list[Waiting] = field(default_factory=list)
    leader: Leader | None = None


# --- pools --------------------------------------------------------------------
def claim_ip(claim: Claim) -> Address:
    return ipaddress.ip_interface(claim.spec.cidr).ip


def pool_rows(pools: Iterable[Pool], claims: Iterable[Claim]) -> list[PoolRow]:
    """Sizes and use by the scheduler's own rules (core.pools.usage)."""
    held = [claim_ip(c) for c in claims]
    rows = []
    for pool in sorted(pools, key=lambda p: p.name):
        try:
            use = usage(build_pool(pool), held)
        except PoolError as exc:
            rows.append(PoolRow(pool.name, pool.spec.cidr, 0, 0, 0, pool.spec.auto_assign,
                                str(exc)))
            continue
        rows.append(PoolRow(pool.name, pool.spec.cidr, use.total, use.used, use.free,
                            pool.spec.auto_assign))
    return rows


# --- nodes and leases ---------------------------------------------------------
def parse_time(text: str | None) -> datetime.datetime | None:
    if not text:
        return None
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def lease_state(lease: Mapping[str, Any] | None,
                now: datetime.datetime) -> tuple[float | None, bool]:
    """(seconds since the last renewal, still valid) of a coordination.k8s.io Lease."""
    if lease is None:
        return None, False
    spec = lease.get("spec") or {}
    renewed = parse_time(spec.get("renewTime")) or parse_time(spec.get("acquireTime"))
    if renewed is None:
        return None, False
    age = max((now - renewed).total_seconds(), 0.0)
    return age, age <= float(spec.get("leaseDurationSeconds") or 0)


def node_rows(nodes: Iterable[IpNode], claims: Iterable[Claim],
              leases: Mapping[str, Mapping[str, Any]],
              now: datetime.datetime, draining: Collection[str] = (), *,
              healthy: Mapping[str, str] | None = None) -> list[NodeRow]:
    claims = list(claims)
    ipnodes = {n.name: n for n in nodes}
    names = set(ipnodes) | {c.spec.node_name for c in claims if c.spec.node_name}
    rows = []
    for name in sorted(names):
        mine = [c for c in claims if c.spec.node_name == name]
        age, alive = lease_state(leases.get(name), now)
        ipnode = ipnodes.get(name)
        rows.append(NodeRow(name, len(mine), sum(c.status.ready for c in mine), age, alive,
                            draining=name in draining,
                            holds=len(ipnode.status.addresses) if ipnode else 0,
                            healthy=(healthy or {}).get(name, "")))
    unassigned = [c for c in claims if not c.spec.node_name]
    if unassigned:
        rows.append(NodeRow("", len(unassigned), 0, None, False))
    return rows


# --- Services waiting for an address ----------------------------------------------
def _key(svc: Mapping[str, Any]) -> str:
    return f"{svc['metadata'].get('namespace', '')}/{svc['metadata']['name']}"


def _allocated_ips(svc: Mapping[str, Any]) -> list[str]:
    ips = list((svc.get("spec") or {}).get("externalIPs") or [])
    for ingress in ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []:
        if ingress.get("ip") and ingress["ip"] not in ips:
            ips.append(ingress["ip"])
    return ips


def _claim_problem(ip: str, claim: Claim | None, alive: Mapping[str, bool]) -> str | None:
    if claim is None:
        return f"no IpClaim for {ip} yet: is the scheduler running?"
    node = claim.spec.node_name
    if not node:
        return f"{ip} is not placed: no live node may hold it (agents running? node labels?)"
    if not alive.get(node, False):
        return f"{ip} is on {node}, whose agent Lease has expired: waiting for failover"
    if not claim.status.ready:
        detail = f" ({claim.status.message})" if claim.status.message else ""
        return f"the agent on {node} has not confirmed {ip} yet{detail}"
    return None


def dry_run(views: Mapping[str, ServiceView], claims: Iterable[Claim],
            pools: Iterable[Pool]) -> dict[str, desired.Event]:
    """Service -> the Warning the scheduler's own plan gives for its allocation.

    No nodes: placement is not what keeps a Service from getting an address
    (a claim without a node is reported as such, per address)."""
    usable: list[AddressPool] = []
    for pool in sorted(pools, key=lambda p: p.name):
        try:
            usable.append(build_pool(pool))
        except PoolError:
            continue  # the pool's row says why
    world = desired.World(services=views, claims={c.name: c for c in claims}, pools=usable,
                          nodes={})
    return {e.service: e for e in desired.plan(world).events
            if e.type == desired.WARNING and e.reason in ALLOCATION_REASONS}


@dataclass(frozen=True)
class Context:
    """What the reasons are judged against."""

    claims: list[Claim]
    pools: list[PoolRow]
    alive: Mapping[str, bool]
    scheduler_down: bool
    warnings: Mapping[str, str]  # the scheduler's latest Warning Event per Service
    verdicts: Mapping[str, desired.Event]  # dry_run


def waiting_services(services: Iterable[Mapping[str, Any]], views: Mapping[str, ServiceView],
                     ctx: Context) -> list[Waiting]:
    by_ip: dict[str, Claim] = {str(claim_ip(c)): c for c in ctx.claims}
    out = []
    for svc in sorted(services, key=_key):
        key = _key(svc)
        view = views[key]
        ips = _allocated_ips(svc)
        if (view.load_balancer or view.auto) and not ips:
            wants = "LoadBalancer" if view.load_balancer else "external-ip=auto"
            cond = view.condition  # what the scheduler wrote on the Service says it best
            reason = f"{cond.reason}: {cond.message}" if cond and cond.status == FALSE \
                and cond.reason != "Pending" else _allocation_reason(key, ctx)
            out.append(Waiting(key, wants, reason))
            continue
        for ip in ips:
            problem = _claim_problem(ip, by_ip.get(str(ipaddress.ip_address(ip))), ctx.alive)
            if problem:
                out.append(Waiting(key, ip, problem))
    return out


def _allocation_reason(key: str, ctx: Context) -> str:
    if key in ctx.warnings:  # what the scheduler said about this Service is the best account
        return ctx.warnings[key]
    if not ctx.pools:
        return "no IpClaimPool exists"
    verdict = ctx.verdicts.get(key)
    if verdict is not None:
        hint = ""
        if verdict.reason == "PoolExhausted":
            hint = "every pool it may use is full"
        elif verdict.reason == "NoPool" and not any(p.auto_assign for p in ctx.pools):
            hint = "no pool has autoAssign: name a pool or request an address"
        return f"{verdict.reason}: {verdict.message}" + (f" ({hint})" if hint else "")
    if ctx.scheduler_down:
        return "no scheduler holds the leader Lease: is the scheduler running?"
    return "not allocated yet"


def latest_warnings(events: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """namespace/name of a Service -> "Reason: message" of its newest Warning from us."""
    newest: dict[str, tuple[str, str]] = {}
    for ev in events:
        source = ev.get("reportingComponent") or (ev.get("source") or {}).get("component") or ""
        obj = ev.get("involvedObject") or {}
        if ev.get("type") != "Warning" or obj.get("kind") != "Service" \
                or not source.startswith("externalip"):
            continue
        when = ev.get("lastTimestamp") or ev.get("eventTime") or ""
        key = f"{obj.get('namespace', '')}/{obj.get('name', '')}"
        if key not in newest or when >= newest[key][0]:
            newest[key] = (when, f"{ev.get('reason', '')}: {ev.get('message', '')}")
    return {k: v for k, (_, v) in newest.items()}


def build(*, pools: list[dict[str, Any]], claims: list[dict[str, Any]],
          nodes: list[dict[str, Any]], leases: list[dict[str, Any]],
          services: list[dict[str, Any]], events: list[dict[str, Any]],
          now: datetime.datetime, lb_class: str = OUR_CLASS,
          default_class: bool = True) -> Report:
    typed_claims = [Claim.from_object(c) for c in claims]
    typed_pools = [Pool.from_object(p) for p in pools]
    by_name = {lease["metadata"]["name"]: lease for lease in leases}
    leader = None
    if LEADER_LEASE in by_name:
        age, ok = lease_state(by_name[LEADER_LEASE], now)
        leader = Leader(str(by_name[LEADER_LEASE]["spec"].get("holderIdentity") or ""), age, ok)
    healthy = {n["metadata"]["name"]: c.status for n in nodes
               if (c := find((n.get("status") or {}).get("conditions"), HEALTHY))}
    node_table = node_rows([IpNode.from_object(n) for n in nodes], typed_claims,
                           {k: v for k, v in by_name.items() if k != LEADER_LEASE}, now,
                           # spec.draining: the scheduler's mirror of the Node's drain label
                           {n["metadata"]["name"] for n in nodes
                            if (n.get("spec") or {}).get("draining")}, healthy=healthy)
    pool_table = pool_rows(typed_pools, typed_claims)
    views = {_key(s): service_view(s, lb_class, default_class) for s in services}
    ctx = Context(claims=typed_claims, pools=pool_table,
                  alive={n.name: n.alive for n in node_table},
                  scheduler_down=leader is None or not leader.alive,
                  warnings=latest_warnings(events),
                  verdicts=dry_run(views, typed_claims, typed_pools))
    return Report(
        pools=pool_table,
        nodes=node_table,
        claims=[ClaimRow(c.name, c.spec.cidr, c.spec.node_name, c.status.ready, c.spec.services,
                         c.spec.standbys, c.spec.handover_from)
                for c in sorted(typed_claims, key=lambda c: c.name)],
        waiting=waiting_services(services, views, ctx),
        leader=leader,
    )
