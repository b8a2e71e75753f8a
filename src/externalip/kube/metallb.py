"""Reading MetalLB's configuration and writing its translation
(`externalip migrate metallb`; the translation itself is core.metallb)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from externalip.kube.api import POOLS, Api, ConflictError, Kind, NotFoundError

# MetalLB v0.13+ serves these at metallb.io/v1beta1 (v0.15.2 still does).
METALLB_KINDS = {
    "IPAddressPool": Kind("metallb.io", "v1beta1", "ipaddresspools", True),
    "L2Advertisement": Kind("metallb.io", "v1beta1", "l2advertisements", True),
    "BGPAdvertisement": Kind("metallb.io", "v1beta1", "bgpadvertisements", True),
}


async def read_metallb(api: Api, namespace: str | None = None) -> list[dict[str, Any]]:
    """Every MetalLB pool and advertisement (of one namespace, or of all).

    A kind whose CRD is not installed reads as none; the list responses
    carry no kind per item, so it is set here as the translation expects.
    """
    out: list[dict[str, Any]] = []
    for kind_name, kind in METALLB_KINDS.items():
        try:
            body = await api.list(kind, namespace)
        except NotFoundError:
            continue
        for item in body.get("items") or []:
            out.append({**item, "kind": kind_name, "apiVersion": f"{kind.group}/{kind.version}"})
    return out


async def write_pools(api: Api, pools: Sequence[dict[str, Any]]) -> list[str]:
    """Create the IpClaimPools; one line per pool saying what happened.

    An IpClaimPool that already exists is left alone (it may be in use):
    the line says whether it differs from the translation.
    """
    lines = []
    for pool in pools:
        name = pool["metadata"]["name"]
        try:
            await api.create(POOLS, pool)
            lines.append(f"ipclaimpool/{name} created")
        except ConflictError:
            current = await api.get(POOLS, name)
            same = all(current.get("spec", {}).get(k) == v for k, v in pool["spec"].items())
            lines.append(f"ipclaimpool/{name} exists, left alone"
                         + ("" if same else " (its spec differs from the translation)"))
    return lines
