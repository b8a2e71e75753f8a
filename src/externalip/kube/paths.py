"""REST paths of lightkube resource classes."""

from __future__ import annotations

from typing import Any

from lightkube.core.resource import api_info


def collection_path(resource: Any, namespace: str | None = None) -> str:
    info = api_info(resource).resource
    base = f"/api/{info.version}" if not info.group else f"/apis/{info.group}/{info.version}"
    if namespace:
        base += f"/namespaces/{namespace}"
    return f"{base}/{api_info(resource).plural}"


def object_key(obj: dict[str, Any]) -> str:
    """`namespace/name` for namespaced objects, `name` for cluster-scoped ones."""
    meta = obj["metadata"]
    ns = meta.get("namespace")
    return f"{ns}/{meta['name']}" if ns else str(meta["name"])
