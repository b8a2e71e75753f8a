"""`externalip status`: what the installation is doing, from the API alone.

Read-only: it lists objects once and computes the report with the pure
functions of core.status (the scheduler's own rules and a dry run of its
plan), so the numbers are the same whether or not the scheduler has written
the pools' status yet. This module only reads and renders.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import sys
from dataclasses import asdict
from typing import Any

from externalip.core.status import Report, build
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
        lines += _table(["NAME", "LEASE AGE", "ALIVE", "HEALTHY", "DRAINING", "CLAIMS", "READY",
                         "HOLDS"],
                        [[n.name or "(unassigned)", _age(n.lease_age),
                          ("yes" if n.alive else "no") if n.name else "-",
                          {"True": "yes", "False": "no"}.get(n.healthy, "-"),
                          ("yes" if n.draining else "no") if n.name else "-",
                          str(n.claims), str(n.ready), str(n.holds)] for n in report.nodes])
    else:
        lines.append("(none: no agent has registered)")
    lines += ["", "CLAIMS"]
    if report.claims:
        lines += _table(["IP", "NODE", "READY", "STANDBYS", "HANDOVER FROM", "SERVICES"],
                        [[c.cidr, c.node or "(unassigned)", str(c.ready).lower(),
                          ",".join(c.standbys) or "-", c.handover_from or "-",
                          ",".join(c.services)] for c in report.claims])
    else:
        lines.append("(none)")
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


def main(opts: argparse.Namespace) -> int:
    # --namespace (of the agents' Leases), --load-balancer-class and
    # --default-class come from the same flags and environment variables the
    # programs read, so status judges Services as the scheduler does.
    try:
        objs = asyncio.run(fetch(opts.kubeconfig, opts.namespace))
    except Exception as exc:  # any failure to read is reported, not a traceback
        print(f"externalip status: {exc}", file=sys.stderr)
        return 1
    report = build(now=datetime.datetime.now(datetime.UTC), lb_class=opts.load_balancer_class,
                   default_class=opts.default_class, **objs)
    sys.stdout.write(render_json(report) if opts.output == "json" else render_table(report))
    return 0
