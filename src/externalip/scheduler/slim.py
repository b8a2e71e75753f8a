"""What the scheduler keeps of the objects it caches: only what the plan
reads. 10,000 Services and 1,000 Nodes are held for the life of the process,
and Nodes carry large image and status lists.
"""

from __future__ import annotations

from typing import Any

from externalip.core import views


def service(obj: dict[str, Any]) -> dict[str, Any]:
    """Without other controllers' annotations (kubectl's last-applied copy of
    the whole object, mostly) and managed fields: 10,000 Services are kept."""
    meta = obj.get("metadata") or {}
    meta.pop("managedFields", None)
    notes = meta.get("annotations")
    if notes:
        meta["annotations"] = {k: v for k, v in notes.items() if k in views.SERVICE_ANNOTATIONS}
    return obj


def node(obj: dict[str, Any]) -> dict[str, Any]:
    """Keep only what placement reads: nodes carry large images and status lists."""
    status = obj.get("status") or {}
    return {"metadata": {k: obj["metadata"].get(k) for k in ("name", "labels",
                                                             "resourceVersion", "uid")},
            "spec": {"unschedulable": (obj.get("spec") or {}).get("unschedulable", False)},
            "status": {"conditions": [c for c in status.get("conditions") or ()
                                      if c.get("type") == "Ready"],
                       "addresses": status.get("addresses") or []}}


def ipnode(obj: dict[str, Any]) -> dict[str, Any]:
    """What the plan reads of an agent's IpNode: the node's own addresses (never
    allocated), the addresses it holds (not handed out again while it holds
    them), the peers it hears (the backstop's liveness), and whether the
    drain mirror is up to date."""
    status = obj.get("status") or {}
    return {"metadata": {k: obj["metadata"].get(k) for k in ("name", "resourceVersion")},
            "spec": {"draining": (obj.get("spec") or {}).get("draining", False)},
            "status": {"peers": status.get("peers") or [],
                       "nodeAddresses": status.get("nodeAddresses") or [],
                       "addresses": status.get("addresses") or [],
                       "conditions": status.get("conditions") or []}}
