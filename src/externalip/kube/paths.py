"""Keys of API objects in the informer stores."""

from __future__ import annotations

from typing import Any


def object_key(obj: dict[str, Any]) -> str:
    """`namespace/name` for namespaced objects, `name` for cluster-scoped ones."""
    meta = obj["metadata"]
    ns = meta.get("namespace")
    return f"{ns}/{meta['name']}" if ns else str(meta["name"])
