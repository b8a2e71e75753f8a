"""Which watch events can change the scheduler's plan.

Every Lease renewal, Node heartbeat, claim status write and pool status
write used to trigger a full pass: idle with 2,000 Services that was a fifth
of a core. A pass is needed only when something the plan reads has changed,
so each handler compares the object's relevant part (the same views the
pass builds) with the one seen before. ADDED and DELETED always count.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

from externalip.core import views
from externalip.core.model import Claim
from externalip.kube.informer import ADDED, DELETED

Digest = Callable[[dict[str, Any]], object]


def claim_digest(claim: Claim) -> object:
    """Spec, labels, readiness with its message (a node refusing a claim makes
    placement look again: scheduler.refusals) and the holder (a standby's
    takeover becomes the record)."""
    return (claim.spec, dict(claim.labels), claim.status.ready, claim.status.message,
            claim.status.holder)


def pool_digest(obj: dict[str, Any]) -> object:
    return obj.get("spec")  # status is ours


def node_digest(obj: dict[str, Any]) -> object:
    return (obj["metadata"].get("labels"), views.node_usable(obj),
            (obj.get("status") or {}).get("addresses"))


def ipnode_digest(obj: dict[str, Any]) -> object:
    """The node's own addresses, the addresses it holds (one released by a node
    cut off from the API is free once it says so) and the peers it hears (the
    Lease backstop)."""
    status = obj.get("status") or {}
    return status.get("nodeAddresses"), status.get("addresses"), status.get("peers")


def slice_digest(obj: dict[str, Any]) -> object:
    return views.endpoint_nodes({"_": obj})


class Relevance:
    """Remembers one digest per object of one informer; says when it changed."""

    def __init__(self, digest: Digest) -> None:
        self._digest = digest
        self._seen: dict[Hashable, object] = {}

    def changed(self, kind: str, obj: dict[str, Any]) -> bool:
        meta = obj["metadata"]
        key = (meta.get("namespace"), meta["name"])
        if kind == DELETED:
            self._seen.pop(key, None)
            return True
        digest = self._digest(obj)
        before = self._seen.get(key, _NOTHING)
        self._seen[key] = digest
        return kind == ADDED or before != digest


_NOTHING = object()
