"""MetalLB's configuration -> IpClaimPools, pure (`externalip migrate metallb`).

Input: the objects of MetalLB's metallb.io API (IPAddressPool,
L2Advertisement, BGPAdvertisement; other kinds are ignored) as parsed YAML.
Output: the IpClaimPool manifests that give Services the same addresses under
the same rules, and one note for everything that cannot be carried over, so
the user decides instead of finding out later.

What maps:
- IPAddressPool.spec.addresses (CIDRs and `first-last` ranges) -> one
  IpClaimPool per address family, `ranges` listing every entry exactly (a
  MetalLB CIDR entry offers its network and broadcast addresses too), inside
  one `cidr` that covers them;
- autoAssign, avoidBuggyIPs -> the same fields;
- serviceAllocation.namespaces -> namespaces; one serviceSelector -> serviceSelector;
- the nodeSelectors of the L2Advertisements that announce the pool -> nodeSelector.
MetalLB's Service annotations need no translation: the scheduler reads them
(core.services).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from externalip import API_GROUP, API_VERSION
from externalip.core.selectors import LabelSelector
from externalip.core.special import special

GROUP = "metallb.io"
POOL, L2, BGP = "IPAddressPool", "L2Advertisement", "BGPAdvertisement"
MAX_RANGES = 64  # the IpClaimPool CRD's limit on spec.ranges
MIGRATED_ANNOTATION = "externalip.io/migrated-from"

Obj = Mapping[str, Any]
Range = tuple[ipaddress.IPv4Address | ipaddress.IPv6Address,
              ipaddress.IPv4Address | ipaddress.IPv6Address]


@dataclass
class Migration:
    pools: list[dict[str, Any]] = field(default_factory=list)  # IpClaimPool manifests
    notes: list[str] = field(default_factory=list)  # what was not carried over, and why


def is_metallb(obj: Obj) -> bool:
    return str(obj.get("apiVersion", "")).split("/")[0] == GROUP and \
        obj.get("kind") in (POOL, L2, BGP)


def parse_entry(text: str) -> Range:
    """One entry of IPAddressPool.spec.addresses: a CIDR or `first-last`."""
    text = text.strip()
    if "-" in text:
        first, last = (ipaddress.ip_address(t.strip()) for t in text.split("-", 1))
        if first.version != last.version or int(first) > int(last):
            raise ValueError(f"{text!r} is not a range first-last of one family")
        return first, last
    net = ipaddress.ip_network(text, strict=False)
    return net.network_address, net.broadcast_address


def _envelope(ranges: Sequence[Range]) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """The smallest network holding every range (ranges of one family)."""
    low, high = min(r[0] for r in ranges), max(r[1] for r in ranges)
    bits = low.max_prefixlen
    prefix = bits - (int(low) ^ int(high)).bit_length()
    return ipaddress.ip_network(f"{low}/{prefix}", strict=False)


def _announcing(pool: Obj, ads: Iterable[Obj]) -> list[Obj]:
    """The advertisements that announce this pool (no pool list = every pool)."""
    name = pool["metadata"]["name"]
    labels = pool["metadata"].get("labels") or {}
    out = []
    for ad in ads:
        spec = ad.get("spec") or {}
        names = spec.get("ipAddressPools") or []
        selectors = spec.get("ipAddressPoolSelectors") or []
        if (not names and not selectors) or name in names or \
                any((LabelSelector.from_dict(s) or LabelSelector()).matches(labels)
                    for s in selectors):
            out.append(ad)
    return out


def _node_selector(name: str, l2: list[Obj], notes: list[str]) -> Obj | None:
    """One node selector for the pool, or None (every node the agent runs on)."""
    choices: list[Obj | None] = []
    for ad in l2:
        selectors = (ad.get("spec") or {}).get("nodeSelectors") or [None]
        choices += [s or None for s in selectors]
        if (ad.get("spec") or {}).get("interfaces"):
            notes.append(f"pool {name}: L2Advertisement {ad['metadata']['name']} limits "
                         "interfaces; externalip announces on the agent's --iface "
                         "(chart value `interface`)")
    distinct = {repr(c) for c in choices}
    if len(distinct) == 1 and choices[0] is not None:
        return choices[0]
    if len(distinct) > 1 and None not in choices:
        notes.append(f"pool {name}: announced from nodes of {len(distinct)} different node "
                     "selectors; an IpClaimPool has one nodeSelector, so none is set (every "
                     "node running the agent may hold its addresses): set one by hand")
    return None


def _tenancy(name: str, spec: Obj, notes: list[str]) -> dict[str, Any]:
    alloc = spec.get("serviceAllocation") or {}
    out: dict[str, Any] = {}
    if alloc.get("namespaces"):
        out["namespaces"] = list(alloc["namespaces"])
    if alloc.get("namespaceSelectors"):
        notes.append(f"pool {name}: serviceAllocation.namespaceSelectors cannot be carried "
                     "over (IpClaimPool takes a list of namespaces); list them in "
                     "spec.namespaces, or the pool serves every namespace")
    selectors = alloc.get("serviceSelectors") or []
    if selectors:
        out["serviceSelector"] = selectors[0]
        if len(selectors) > 1:
            notes.append(f"pool {name}: {len(selectors)} serviceSelectors (any may match) "
                         "became the first one only; Services matching only the others no "
                         "longer get addresses from it")
    if alloc.get("priority") is not None:
        notes.append(f"pool {name}: serviceAllocation.priority is not carried over; "
                     "externalip tries pools in name order")
    return out


def _split(name: str, ranges: list[Range], notes: list[str]) -> list[list[Range]]:
    """Ranges of one family -> groups that each fit one IpClaimPool: a cidr
    that is not a special network and at most MAX_RANGES ranges."""
    envelope = _envelope(ranges)
    if not special(envelope.network_address) and len(ranges) <= MAX_RANGES:
        return [ranges]
    notes.append(f"pool {name}: its IPv{envelope.version} addresses lie too far apart "
                 f"for one cidr or are more than {MAX_RANGES} entries; split into one "
                 "IpClaimPool per entry (a metallb.io/address-pool annotation selects only "
                 "the first)")
    return [[r] for r in ranges]


def _pool_manifests(pool: Obj, l2: list[Obj], bgp: list[Obj],
                    notes: list[str]) -> list[dict[str, Any]]:
    name, spec = pool["metadata"]["name"], pool.get("spec") or {}
    by_family: dict[int, list[Range]] = {}
    for text in spec.get("addresses") or []:
        try:
            first, last = parse_entry(str(text))
        except ValueError as exc:
            notes.append(f"pool {name}: address entry {text!r} skipped: {exc}")
            continue
        by_family.setdefault(first.version, []).append((first, last))
    if not l2:
        notes.append(f"pool {name}: no L2Advertisement announces it"
                     + (" (only BGP)" if bgp else "")
                     + "; externalip announces every address it hands out on L2 (ARP/NDP); "
                     "for routed setups see docs/ecmp-bgp.md")
    common: dict[str, Any] = {"autoAssign": bool(spec.get("autoAssign", True)),
                              "avoidBuggyIPs": bool(spec.get("avoidBuggyIPs", False))}
    common.update(_tenancy(name, spec, notes))
    selector = _node_selector(name, l2, notes)
    if selector is not None:
        common["nodeSelector"] = selector
    groups = [(v, g) for v in sorted(by_family) for g in _split(name, by_family[v], notes)]
    if len(by_family) > 1:
        notes.append(f"pool {name}: holds IPv4 and IPv6 addresses; an IpClaimPool holds one "
                     f"family, so the IPv6 part is pool {name}-v6 (a metallb.io/address-pool "
                     f"annotation naming {name} reaches the IPv4 part only)")
    out = []
    for i, (version, ranges) in enumerate(groups):
        suffix = "" if i == 0 else ("-v6" if len(groups) == 2 and version == 6 else f"-{i}")
        out.append({
            "apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": "IpClaimPool",
            "metadata": {"name": name + suffix, "annotations": {
                MIGRATED_ANNOTATION: f"metallb {pool['metadata'].get('namespace', '')}/{name}"}},
            "spec": {"cidr": str(_envelope(ranges)),
                     "ranges": [[str(a), str(b)] for a, b in sorted(ranges)], **common},
        })
    return out


def migrate(objects: Iterable[Obj]) -> Migration:
    objs = [o for o in objects if is_metallb(o)]
    kinds: dict[str, list[Obj]] = {POOL: [], L2: [], BGP: []}
    for obj in objs:
        kinds[obj["kind"]].append(obj)
    out = Migration()
    if not kinds[POOL]:
        out.notes.append("no IPAddressPool found: nothing to migrate")
    for ad in kinds[BGP]:
        out.notes.append(f"BGPAdvertisement {ad['metadata']['name']}: externalip does not speak "
                         "BGP; its pools are announced on L2 (or use simple mode on lo with "
                         "BIRD: docs/ecmp-bgp.md)")
    for pool in sorted(kinds[POOL], key=lambda p: p["metadata"]["name"]):
        out.pools += _pool_manifests(pool, _announcing(pool, kinds[L2]),
                                     _announcing(pool, kinds[BGP]), out.notes)
    return out
