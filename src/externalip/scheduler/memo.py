"""Views of cached API objects, converted once per object version.

Every pass reads every Service and claim; converting 10,000 of each from
JSON (address parsing, tuples, frozensets) was most of a pass that changed
nothing. The informer replaces an object in its store when it changes (a
watch event, or a write's response put there by the gateway), so an object
that is still the very same dict has the same view: the identity check
makes a pass over unchanged objects a dictionary walk.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

V = TypeVar("V")


class Memo(Generic[V]):
    def __init__(self, convert: Callable[[dict[str, Any]], V]) -> None:
        self._convert = convert
        self._seen: dict[str, tuple[dict[str, Any], V]] = {}

    def over(self, store: Mapping[str, dict[str, Any]]) -> dict[str, V]:
        """The view of every object in `store`, by the same keys; forgets the rest."""
        seen, fresh = self._seen, {}
        out: dict[str, V] = {}
        for key, obj in store.items():
            hit = seen.get(key)
            if hit is None or hit[0] is not obj:
                hit = (obj, self._convert(obj))
            fresh[key] = hit
            out[key] = hit[1]
        self._seen = fresh
        return out
