"""Typed views of our custom resources. Pure: no client library is imported here.

The rest of the code base works with these frozen dataclasses only; the
conversion from and to the API's JSON lives here, in one place (the classes
that address the resources on the API server are in kube.resources). Parsing is
lenient where old objects may lack a field (the seed's pools had no
`autoAssign`), and strict where a wrong value would mean a wrong IP.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from externalip import API_GROUP, API_VERSION
from externalip.core.selectors import LabelSelector

# Label the scheduler puts on a claim so an agent can watch only its own claims
# (the seed used the same label).
NODE_LABEL = "ipnode"
# One label per node a claim concerns (`node.ipcontroller.ext/<node>`), valued
# "holder" or "standby-<rank>": an agent watches exactly the claims it holds or
# may take over with one selector, and a standby becoming the holder is a
# change of value (MODIFIED), never a delete and an add of the same claim.
ROLE_LABEL_PREFIX = "node.ipcontroller.ext/"
HOLDER = "holder"
# The CRDs' limit on status messages.
MESSAGE_MAX = 1024
LABEL_VALUE_MAX = 63


def node_label(node: str) -> str:
    """The `ipnode` label value that selects a node's claims.

    Node names may be 253 characters long, label values only 63: a longer
    name becomes its first characters and a hash of the whole, still unique
    in practice and still readable. The scheduler writes it, the agent's
    informer selects by it; both call this one function. (The agent also
    checks spec.nodeName, so even a hash collision could not make it hold a
    claim of another node.)
    """
    if len(node) <= LABEL_VALUE_MAX:
        return node
    digest = hashlib.sha256(node.encode()).hexdigest()[:16]
    return f"{node[:LABEL_VALUE_MAX - 17].rstrip('-.')}-{digest}"


@dataclass(frozen=True)
class PoolSpec:
    """IpClaimPool.spec. `ranges` empty means the whole cidr minus its network address."""

    cidr: str
    ranges: tuple[tuple[str, str], ...] = ()
    auto_assign: bool = True
    avoid_buggy_ips: bool = False
    node_selector: LabelSelector | None = None
    service_selector: LabelSelector | None = None
    namespaces: tuple[str, ...] = ()
    # The seed recorded allocations here (ip -> claim name). We read it so old
    # pools keep their addresses reserved; claims are the source of truth.
    allocated: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PoolSpec:
        return cls(
            cidr=str(d["cidr"]),
            ranges=tuple((str(r[0]), str(r[1])) for r in d.get("ranges") or ()),
            auto_assign=bool(d.get("autoAssign", True)),
            avoid_buggy_ips=bool(d.get("avoidBuggyIPs", False)),
            node_selector=LabelSelector.from_dict(d.get("nodeSelector")),
            service_selector=LabelSelector.from_dict(d.get("serviceSelector")),
            namespaces=tuple(d.get("namespaces") or ()),
            allocated=dict(d.get("allocated") or {}),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"cidr": self.cidr}
        if self.ranges:
            out["ranges"] = [list(r) for r in self.ranges]
        if not self.auto_assign:
            out["autoAssign"] = False
        if self.avoid_buggy_ips:
            out["avoidBuggyIPs"] = True
        if self.node_selector is not None:
            out["nodeSelector"] = self.node_selector.to_dict()
        if self.service_selector is not None:
            out["serviceSelector"] = self.service_selector.to_dict()
        if self.namespaces:
            out["namespaces"] = list(self.namespaces)
        if self.allocated:
            out["allocated"] = dict(self.allocated)
        return out


@dataclass(frozen=True)
class Pool:
    name: str
    spec: PoolSpec

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> Pool:
        return cls(name=obj["metadata"]["name"], spec=PoolSpec.from_dict(obj.get("spec") or {}))


@dataclass(frozen=True)
class ClaimSpec:
    """IpClaim.spec: one address with its mask, the node that must hold it."""

    cidr: str
    node_name: str = ""
    link: str = ""
    pool: str = ""
    # "namespace/name" of every Service that references this address.
    services: tuple[str, ...] = ()
    sharing_key: str = ""
    # Nodes that take the address over, in order, when the holder dies
    # (decided ahead of time so no write stands between a death and a takeover).
    standbys: tuple[str, ...] = ()
    handover_from: str = ""  # a draining node that lets go once the new holder has it
    # (protocol, port) of the owning Services: the only ports the agent's port
    # guard (net.portguard) lets reach the node on this address.
    ports: tuple[tuple[str, int], ...] = ()

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ClaimSpec:
        return cls(
            cidr=str(d["cidr"]),
            node_name=str(d.get("nodeName") or ""),
            link=str(d.get("link") or ""),
            pool=str(d.get("pool") or ""),
            services=tuple(sorted(d.get("services") or ())),
            sharing_key=str(d.get("sharingKey") or ""),
            standbys=tuple(str(n) for n in d.get("standbys") or ()),
            handover_from=str(d.get("handoverFrom") or ""),
            ports=tuple(sorted((str(p.get("protocol") or "TCP"), int(p["port"]))
                               for p in d.get("ports") or ())),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"cidr": self.cidr}
        for key, value in (
            ("nodeName", self.node_name), ("link", self.link), ("pool", self.pool),
            ("sharingKey", self.sharing_key), ("handoverFrom", self.handover_from),
        ):
            if value:
                out[key] = value
        if self.services:
            out["services"] = list(self.services)
        if self.standbys:
            out["standbys"] = list(self.standbys)
        if self.ports:
            out["ports"] = [{"protocol": proto, "port": port} for proto, port in self.ports]
        return out


@dataclass(frozen=True)
class ClaimStatus:
    """Written by the agent that holds the address: proof it is really up."""

    ready: bool = False
    holder: str = ""
    since: str = ""  # RFC 3339 time the holder configured it
    message: str = ""
    # Raised by every takeover: the record of how often the address changed
    # hands without the scheduler.
    term: int = 0
    # The node a standby took the address from; while the claim is still
    # assigned to that node, the takeover is newer than the assignment.
    taken_from: str = ""
    # Another host on the segment uses the address (the MAC that answered the
    # agent's probe): the scheduler's pool skips it (scheduler.conflicts).
    conflict: str = ""

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> ClaimStatus:
        d = d or {}
        return cls(
            ready=bool(d.get("ready", False)),
            holder=str(d.get("holder") or ""),
            since=str(d.get("since") or ""),
            message=str(d.get("message") or ""),
            term=int(d.get("term") or 0),
            taken_from=str(d.get("takenFrom") or ""),
            conflict=str(d.get("conflict") or ""),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ready": self.ready}
        for key, value in (("holder", self.holder), ("since", self.since),
                           ("message", self.message), ("term", self.term),
                           ("takenFrom", self.taken_from), ("conflict", self.conflict)):
            if value:
                out[key] = value
        return out


@dataclass(frozen=True)
class Claim:
    name: str
    spec: ClaimSpec
    status: ClaimStatus = ClaimStatus()
    labels: Mapping[str, str] = field(default_factory=dict)
    resource_version: str = ""
    # status.conditions as stored (core.conditions reads and merges them);
    # apart from ClaimStatus so comparing statuses ignores their timestamps
    conditions: tuple[Mapping[str, Any], ...] = ()

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> Claim:
        meta = obj["metadata"]
        return cls(
            name=meta["name"],
            spec=ClaimSpec.from_dict(obj.get("spec") or {}),
            status=ClaimStatus.from_dict(obj.get("status")),
            labels=dict(meta.get("labels") or {}),
            resource_version=str(meta.get("resourceVersion") or ""),
            conditions=tuple((obj.get("status") or {}).get("conditions") or ()),
        )

    def to_object(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": self.name}
        labels = {k: v for k, v in self.labels.items()
                  if k != NODE_LABEL and not k.startswith(ROLE_LABEL_PREFIX)}
        labels.update(claim_labels(self.spec))
        if labels:
            meta["labels"] = labels
        return {
            "apiVersion": f"{API_GROUP}/{API_VERSION}",
            "kind": "IpClaim",
            "metadata": meta,
            "spec": self.spec.to_dict(),
        }


@dataclass(frozen=True)
class NodeStatus:
    """IpNode.status: what an agent reports about its host (inventory, not liveness).

    Liveness is the agent's coordination.k8s.io Lease, which is cheaper to renew.
    """

    link: str = ""
    addresses: tuple[str, ...] = ()
    agent_version: str = ""
    # Peers whose heartbeats this agent hears on the segment: the scheduler's
    # slow backstop does not declare a node dead while live peers hear it.
    peers: tuple[str, ...] = ()
    # The node's own addresses: never given to a Service (core.tenancy).
    node_addresses: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> NodeStatus:
        d = d or {}
        return cls(
            link=str(d.get("link") or ""),
            addresses=tuple(sorted(d.get("addresses") or ())),
            agent_version=str(d.get("agentVersion") or ""),
            peers=tuple(sorted(d.get("peers") or ())),
            node_addresses=tuple(sorted(d.get("nodeAddresses") or ())),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "link": self.link,
            "addresses": list(self.addresses),
            "agentVersion": self.agent_version,
            "peers": list(self.peers),
            "nodeAddresses": list(self.node_addresses),
        }


@dataclass(frozen=True)
class IpNode:
    name: str
    status: NodeStatus = NodeStatus()

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> IpNode:
        return cls(name=obj["metadata"]["name"], status=NodeStatus.from_dict(obj.get("status")))


def claim_labels(spec: ClaimSpec) -> dict[str, str]:
    """The labels that say which nodes a claim concerns (the seed's `ipnode` too)."""
    labels = {role_label(spec.handover_from): "handover"} if spec.handover_from else {}
    labels |= {role_label(n): f"standby-{r}" for r, n in enumerate(spec.standbys, start=1)}
    if spec.node_name:
        labels[NODE_LABEL] = node_label(spec.node_name)
        labels[role_label(spec.node_name)] = HOLDER
    return labels


def role_label(node: str) -> str:
    """The label key of `node`'s role in a claim (its name part has the limits
    of a label value: `node_label` shortens long node names)."""
    return ROLE_LABEL_PREFIX + node_label(node)
