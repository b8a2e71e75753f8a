"""`externalip migrate metallb`: MetalLB's pools and advertisements -> IpClaimPools.

Reads from YAML files (-f, repeatable, `-` for stdin) or, without files, from
the cluster; prints the IpClaimPools as YAML on stdout (or creates them with
--apply) and everything that could not be carried over on stderr, so
`externalip migrate metallb > pools.yaml` leaves a reviewable file and a
list of decisions for the user (docs/migrate-from-metallb.md).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from externalip.core.metallb import Migration, migrate
from externalip.kube.api import Api
from externalip.kube.metallb import read_metallb, write_pools


def add_parser(sub: Any) -> None:
    """The `migrate` command and its one source so far, `metallb`."""
    migrate_cmd = sub.add_parser("migrate", help="translate another load balancer's "
                                 "configuration into IpClaimPools")
    sources = migrate_cmd.add_subparsers(dest="source", required=True, metavar="SOURCE")
    what = "MetalLB's IPAddressPools, L2Advertisements and BGPAdvertisements -> IpClaimPools"
    p = sources.add_parser("metallb", help=what, description=what + " (YAML on stdout; "
                           "what cannot be carried over on stderr; docs/migrate-from-metallb.md)")
    p.add_argument("-f", "--filename", action="append", default=[],
                   help="YAML file(s) of MetalLB objects ('-' for stdin); "
                   "without any, read them from the cluster")
    p.add_argument("--kubeconfig", default=os.environ.get("EXTERNALIP_KUBECONFIG", ""),
                   help="kubeconfig file (env EXTERNALIP_KUBECONFIG); empty means in-cluster "
                   "config, then $KUBECONFIG or ~/.kube/config")
    p.add_argument("-n", "--namespace", default=None,
                   help="read MetalLB objects of this namespace only (default: all)")
    p.add_argument("--apply", action="store_true",
                   help="create the IpClaimPools in the cluster instead of printing them")
    p.set_defaults(run=main)


def _load(names: list[str]) -> list[dict[str, Any]]:
    out = []
    for name in names:
        text = sys.stdin.read() if name == "-" else Path(name).read_text()
        for doc in yaml.safe_load_all(text):
            if isinstance(doc, dict) and doc.get("kind") == "List":
                out += [d for d in doc.get("items") or [] if isinstance(d, dict)]
            elif isinstance(doc, dict):
                out.append(doc)
    return out


async def _run(opts: argparse.Namespace) -> tuple[Migration, list[str]]:
    api: Api | None = None
    try:
        if opts.filename:
            objects = _load(opts.filename)
        else:
            api = Api.connect(opts.kubeconfig, retry_budget=10.0)
            objects = await read_metallb(api, opts.namespace)
        result = migrate(objects)
        if not opts.apply:
            return result, []
        if api is None:
            api = Api.connect(opts.kubeconfig, retry_budget=10.0)
        return result, await write_pools(api, result.pools)
    finally:
        if api is not None:
            await api.close()


def main(opts: argparse.Namespace) -> int:
    try:
        result, written = asyncio.run(_run(opts))
    except Exception as exc:  # a file or API failure is reported, not a traceback
        print(f"externalip migrate metallb: {exc}", file=sys.stderr)
        return 1
    if opts.apply:
        print("\n".join(written))
    else:
        sys.stdout.write(yaml.safe_dump_all(result.pools, sort_keys=False))
    for note in result.notes:
        print(f"not carried over: {note}", file=sys.stderr)
    return 0
