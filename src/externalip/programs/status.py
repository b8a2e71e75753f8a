"""`externalip status`: what the installation is doing, from the API alone.

Pools with used/free addresses, claims per node, each node's Lease age (the
agent's heartbeat), the scheduler's leader, and Services still waiting for an
address with the most likely reason. Read-only: it lists objects once and
computes the report with the pure functions below, so the numbers are the
same whether or not the scheduler has written the pools' status yet.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from externalip.core.model import Claim, IpNode, Pool
from externalip.core.pools import PoolError
from externalip.core.pools import build as build_pool
from externalip.kube.api import (
    CLAIMS,
    EVENTS,
    IPNODES,
    LEASES,
    POOLS,
    SERVICES,
    Api,
    ApiError,
    Kind,
    NotFoundError,
)

NAMESPACE = "externalip"
LEADER_LEASE = "externalip-scheduler"  # --leader-elect-resource-name default
OUR_CLASS = "externalip.io/lb"  # --load-balancer-class default
AUTO_ANNOTATION = "external-ip"  # the seed's `external-ip: auto`

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


@dataclass(frozen=True)
class ClaimRow:
    name: str
    cidr: str
    node: str
    ready: bool
    services: tuple[str, ...]


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
    """Sizes and use by the scheduler's own rules (externalip.core.pools), so
    these numbers are the ones it allocates by: an address is used when a
    claim holds it, whether it was allocated from the pool or requested."""
    held = [claim_ip(c) for c in claims]
    rows = []
    for pool in sorted(pools, key=lambda p: p.name):
        try:
            usable = build_pool(pool)
        except PoolError as exc:
            rows.append(PoolRow(pool.name, pool.spec.cidr, 0, 0, 0, pool.spec.auto_assign,
                                str(exc)))
            continue
        total = usable.size()
        used = len({ip for ip in held if usable.contains(ip)})
        rows.append(PoolRow(pool.name, pool.spec.cidr, total, used, max(total - used, 0),
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
              now: datetime.datetime) -> list[NodeRow]:
    claims = list(claims)
    names = {n.name for n in nodes} | {c.spec.node_name for c in claims if c.spec.node_name}
    rows = []
    for name in sorted(names):
        mine = [c for c in claims if c.spec.node_name == name]
        age, alive = lease_state(leases.get(name), now)
        rows.append(NodeRow(name, len(mine), sum(c.status.ready for c in mine), age, alive))
    unassigned = [c for c in claims if not c.spec.node_name]
    if unassigned:
        rows.append(NodeRow("", len(unassigned), 0, None, False))
    return rows


# --- Services waiting for an address ----------------------------------------------
def _key(svc: Mapping[str, Any]) -> str:
    return f"{svc['metadata'].get('namespace', '')}/{svc['metadata']['name']}"


def wants_allocation(svc: Mapping[str, Any]) -> bool:
    """A LoadBalancer Service of our class (or of none), or one annotated external-ip=auto."""
    spec = svc.get("spec") or {}
    annotations = svc["metadata"].get("annotations") or {}
    if annotations.get(AUTO_ANNOTATION) == "auto":
        return True
    return spec.get("type") == "LoadBalancer" and spec.get("loadBalancerClass") in (
        None, "", OUR_CLASS)


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


def waiting_services(services: Iterable[Mapping[str, Any]], claims: Iterable[Claim], *,
                     pool_table: list[PoolRow], alive: Mapping[str, bool],
                     leader: Leader | None,
                     warnings: Mapping[str, str]) -> list[Waiting]:
    by_ip: dict[str, Claim] = {str(claim_ip(c)): c for c in claims}
    scheduler_down = leader is None or not leader.alive
    out = []
    for svc in sorted(services, key=_key):
        key = _key(svc)
        ips = _allocated_ips(svc)
        if wants_allocation(svc) and not ips:
            wants = "LoadBalancer" if (svc.get("spec") or {}).get("type") == "LoadBalancer" \
                else "external-ip=auto"
            out.append(Waiting(key, wants, _allocation_reason(key, pool_table, scheduler_down,
                                                              warnings)))
            continue
        for ip in ips:
            problem = _claim_problem(ip, by_ip.get(str(ipaddress.ip_address(ip))), alive)
            if problem:
                out.append(Waiting(key, ip, problem))
    return out


def _allocation_reason(key: str, pools: list[PoolRow], scheduler_down: bool,
                       warnings: Mapping[str, str]) -> str:
    # what the scheduler said about this Service is the best explanation
    if key in warnings:
        return warnings[key]
    if not pools:
        return "no IpClaimPool exists"
    if not any(p.auto_assign for p in pools):
        return "no pool has autoAssign: name a pool or request an address"
    if all(p.free == 0 for p in pools if p.auto_assign and not p.error):
        return "every auto-assign pool is full"
    if scheduler_down:
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
          now: datetime.datetime) -> Report:
    typed_claims = [Claim.from_object(c) for c in claims]
    by_name = {lease["metadata"]["name"]: lease for lease in leases}
    leader = None
    if LEADER_LEASE in by_name:
        age, ok = lease_state(by_name[LEADER_LEASE], now)
        leader = Leader(str(by_name[LEADER_LEASE]["spec"].get("holderIdentity") or ""), age, ok)
    node_table = node_rows([IpNode.from_object(n) for n in nodes], typed_claims,
                           {k: v for k, v in by_name.items() if k != LEADER_LEASE}, now)
    pool_table = pool_rows([Pool.from_object(p) for p in pools], typed_claims)
    alive = {n.name: n.alive for n in node_table}
    return Report(
        pools=pool_table,
        nodes=node_table,
        claims=[ClaimRow(c.name, c.spec.cidr, c.spec.node_name, c.status.ready, c.spec.services)
                for c in sorted(typed_claims, key=lambda c: c.name)],
        waiting=waiting_services(services, typed_claims, pool_table=pool_table, alive=alive,
                                 leader=leader, warnings=latest_warnings(events)),
        leader=leader,
    )


# --- output -------------------------------------------------------------------
def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.0f}h"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return ["   ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
            for r in [header, *rows]]


def render_table(report: Report) -> str:
    lines = ["POOLS"]
    if report.pools:
        lines += _table(["NAME", "CIDR", "TOTAL", "USED", "FREE", "AUTO"],
                        [[p.name, p.cidr, str(p.total), str(p.used), str(p.free),
                          str(p.auto_assign).lower()] for p in report.pools])
        lines += [f"pool {p.name} is unusable: {p.error}" for p in report.pools if p.error]
    else:
        lines.append("(none: LoadBalancer Services cannot get an address)")
    lines += ["", "NODES"]
    if report.nodes:
        lines += _table(["NAME", "LEASE AGE", "ALIVE", "CLAIMS", "READY"],
                        [[n.name or "(unassigned)", _age(n.lease_age),
                          ("yes" if n.alive else "no") if n.name else "-",
                          str(n.claims), str(n.ready)] for n in report.nodes])
    else:
        lines.append("(none: no agent has registered)")
    leader = report.leader
    lines += ["", "SCHEDULER LEADER: " + (
        "none" if leader is None else
        f"{leader.holder or '(none)'} (renewed {_age(leader.age)} ago"
        f"{'' if leader.alive else ', expired'})")]
    lines += ["", "WAITING SERVICES"]
    if report.waiting:
        lines += _table(["SERVICE", "WANTS", "REASON"],
                        [[w.service, w.wants, w.reason] for w in report.waiting])
    else:
        lines.append("(none)")
    return "\n".join(lines) + "\n"


def render_json(report: Report) -> str:
    return json.dumps(asdict(report), indent=2, sort_keys=True) + "\n"


# --- reading the API ------------------------------------------------------------
async def fetch(kubeconfig: str, namespace: str) -> dict[str, list[dict[str, Any]]]:
    """List everything the report reads; the gateway waits out 429/503 (an API
    server still warming its caches answers "storage is (re)initializing")."""
    api = Api.connect(kubeconfig, retry_budget=10.0)
    lists: dict[str, tuple[Kind, str | None, dict[str, str]]] = {
        "pools": (POOLS, None, {}),
        "claims": (CLAIMS, None, {}),
        "nodes": (IPNODES, None, {}),
        "leases": (LEASES, namespace, {}),
        "services": (SERVICES, None, {}),
        "events": (EVENTS, None, {"fieldSelector":
                                  "type=Warning,involvedObject.kind=Service"}),
    }
    try:
        bodies = await asyncio.gather(*(_list(api, *args) for args in lists.values()))
        return {name: body.get("items") or [] for name, body in zip(lists, bodies, strict=True)}
    finally:
        await api.close()


async def _list(api: Api, kind: Kind, namespace: str | None,
                params: dict[str, str]) -> dict[str, Any]:
    try:
        return await api.list(kind, namespace, params)
    except NotFoundError as exc:
        if kind in (POOLS, CLAIMS, IPNODES):
            raise RuntimeError("the ipcontroller.ext CRDs are not installed "
                               "(kubectl apply -k deploy/)") from exc
        raise
    except ApiError as exc:
        raise RuntimeError(f"list {kind.plural}: {exc}") from exc


def main(opts: Any) -> int:
    # the namespace of the agents' Leases: the programs' --namespace, from
    # the same environment variable they read
    namespace = getattr(opts, "namespace", None) or os.environ.get(
        "EXTERNALIP_NAMESPACE") or NAMESPACE
    try:
        objs = asyncio.run(fetch(opts.kubeconfig, namespace))
    except Exception as exc:  # any failure to read is reported, not a traceback
        print(f"externalip status: {exc}", file=sys.stderr)
        return 1
    report = build(now=datetime.datetime.now(datetime.UTC), **objs)
    sys.stdout.write(render_json(report) if opts.output == "json" else render_table(report))
    return 0
