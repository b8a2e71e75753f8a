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

    def view(self, key: str, obj: dict[str, Any]) -> V:
        """The view of one object (the relevance filter asks as events arrive,
        so the next pass finds the views made)."""
        hit = self._seen.get(key)
        if hit is None or hit[0] is not obj:
            hit = self._seen[key] = (obj, self._convert(obj))
        return hit[1]

    def over(self, store: Mapping[str, dict[str, Any]]) -> dict[str, V]:
        """The view of every object in `store`, by the same keys; forgets the rest."""
        out = {key: self.view(key, obj) for key, obj in store.items()}
        if len(self._seen) > len(out):
            self._seen = {key: self._seen[key] for key in out}
        return out
